// The runner's pages (functions/playground, functions/dashboard): an HTML document with
// its script inlined, bundled by the set-up (esbuild) into config.pagesDir. Nothing is
// fetched from anywhere else at run time.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const bundles = new Map<string, string>();

function bundle(dir: string, name: string): string {
  let script = bundles.get(name);
  if (script === undefined) {
    try {
      script = readFileSync(join(dir, `${name}.js`), 'utf8');
    } catch (e) {
      throw new Error(`${name}: the page is not built (deploy/setup.sh builds it): ${(e as Error).message}`);
    }
    bundles.set(name, script);
  }
  return script;
}

// The colours of cyber-dojo's traffic lights.
const STYLE = `
  :root { font-family: system-ui, sans-serif; color: #222; background: #f6f6f3; }
  body { margin: 0; }
  header { display: flex; flex-wrap: wrap; gap: .75rem 1.5rem; align-items: center; padding: .6rem 1rem; background: #2b2b2b; color: #eee; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header a { color: #9cf; }
  main { padding: .75rem 1rem; max-width: 80rem; margin: auto; }
  button { font: inherit; padding: .35rem .8rem; border-radius: .3rem; border: 1px solid #888; background: #fff; cursor: pointer; }
  button:disabled { opacity: .5; }
  #test { font-weight: bold; background: #2d6a2d; color: #fff; border-color: #2d6a2d; min-width: 6rem; }
  pre { background: #fff; border: 1px solid #ccc; padding: .5rem; overflow: auto; max-height: 20rem; white-space: pre-wrap; word-break: break-word; }
  .lights { display: flex; flex-wrap: wrap; gap: .3rem; list-style: none; padding: 0; margin: .6rem 0; }
  .lights li, .light { width: 1.1rem; height: 1.1rem; border-radius: 50%; display: inline-block; border: 1px solid #0003; }
  [data-colour=red] { background: #e8412d; }
  [data-colour=amber] { background: #f5a623; }
  [data-colour=green] { background: #3cb043; }
  [data-colour=timed_out] { background: #777; }
  [data-colour=faulty] { background: #9b59b6; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
  .error { color: #b00; }
  @media (max-width: 40rem) { main { padding: .5rem; } th, td { padding: .2rem; font-size: .9rem; } }
`;

export function page(dir: string, name: string, title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · cyber-dojo runner</title>
<style>${STYLE}</style>
</head>
<body>
${body}
<script type="module">${bundle(dir, name).replace(/<\/script/gi, '<\\/script')}</script>
</body>
</html>
`;
}
