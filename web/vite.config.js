// The portal is served by the hub from web/dist (compiled into the binary); `npm run dev`
// serves it with hot reload and forwards the API to a hub on :8080 (`medfed demo`).
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const hub = process.env.MEDFED_HUB ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [preact()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // One file per vendor family keeps rebuilds' diffs small and caching useful.
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes('@codemirror') || id.includes('@lezer') || id.includes('codemirror')) return 'editor';
          if (id.includes('chart.js') || id.includes('@kurkle')) return 'chart';
          if (id.includes('oidc-client-ts') || id.includes('jwt-decode')) return 'oidc';
        },
      },
    },
  },
  server: { proxy: { '/v1': hub, '/portal': hub, '/openapi.json': hub } },
});
