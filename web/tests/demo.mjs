// Starts `medfed demo` (the binary in MEDFED_BIN) in a temporary directory and waits until it
// serves, or uses a running one named by MEDFED_DEMO_JSON. `extraArgs` go to `medfed demo`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function startDemo(extraArgs = []) {
  if (process.env.MEDFED_DEMO_JSON) {
    return { demo: JSON.parse(readFileSync(process.env.MEDFED_DEMO_JSON, 'utf8')), stop: async () => {} };
  }
  const bin = process.env.MEDFED_BIN;
  if (!bin) throw new Error('set MEDFED_BIN to a medfed binary (or MEDFED_DEMO_JSON to a running demo)');
  const dir = mkdtempSync(join(tmpdir(), 'medfed-portal-'));
  const child = spawn(bin, ['demo', '--dir', dir, '--patients-per-site', '400', '--sites', '3', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo not up after 240 s:\n${log}`)), 240_000);
    const poll = setInterval(() => {
      if (log.includes('Connection details for scripts')) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve();
      }
    }, 200);
    child.on('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`demo exited with ${code}:\n${log}`));
    });
  });
  await ready;
  const demo = JSON.parse(readFileSync(join(dir, 'demo.json'), 'utf8'));
  return {
    demo,
    stop: async () => {
      child.kill('SIGINT');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
