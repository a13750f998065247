// A message box: errors as sentences, information, success.
export function Notice({ kind = 'info', children, testid }) {
  return (
    <div class={`notice ${kind}`} role={kind === 'error' ? 'alert' : 'status'} data-testid={testid}>
      {children}
    </div>
  );
}
