// Builds the console into dist/ (served by the function app at /). JSX is Preact's; no plugin is
// needed for that. No inline script or style is emitted, so the page runs under a strict CSP.
import { defineConfig } from "vite";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev` with the API on the dev host (bash scripts/run.sh).
    proxy: { "/api": "http://localhost:7071" },
  },
});
