// The SQL editor: CodeMirror with SQL highlighting and completion from the network's catalogue.
// It owns its text (typing re-renders nothing else); the page reads it through `handle`.
import { useEffect, useRef } from 'preact/hooks';
import { EditorView, basicSetup } from 'codemirror';
import { sql, PostgreSQL } from '@codemirror/lang-sql';
import { keymap } from '@codemirror/view';

/**
 * `initial`: the first text; `schema`: table → column names for completion; `onRun`: called on
 * Ctrl/Cmd-Enter; `handle`: a ref given `{ text(), insert(s) }`.
 */
export function SqlEditor({ initial, schema, onRun, handle }) {
  const host = useRef(null);
  const run = useRef(onRun);
  run.current = onRun;

  useEffect(() => {
    const view = new EditorView({
      doc: handle.current?.text() ?? initial,
      parent: host.current,
      extensions: [
        keymap.of([{ key: 'Mod-Enter', run: () => (run.current?.(), true) }]),
        basicSetup,
        sql({ dialect: PostgreSQL, schema, upperCaseKeywords: true }),
        EditorView.contentAttributes.of({ 'aria-label': 'SQL query', 'data-testid': 'sql' }),
      ],
    });
    handle.current = {
      text: () => view.state.doc.toString(),
      insert: (s) => {
        const at = view.state.selection.main.head;
        view.dispatch({ changes: { from: at, insert: s }, selection: { anchor: at + s.length } });
        view.focus();
      },
    };
    return () => view.destroy();
  }, [JSON.stringify(schema)]);

  return <div class="editor" ref={host} />;
}
