// The server entry: configuration from the environment, the host, and a graceful
// stop on SIGTERM/SIGINT (requests under way finish, cron tasks stop).
import { functions } from '../functions/index.ts';
import { loadConfig } from './config.ts';
import { buildHost } from './host.ts';

const config = loadConfig();
const app = await buildHost({ config, functions });
let closing = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'closing: requests under way finish first');
    app.close().then(
      () => process.exit(0),
      (e: unknown) => {
        app.log.error({ err: e }, 'close failed');
        process.exit(1);
      },
    );
  });
}
const address = await app.listen({ host: config.host, port: config.port });
app.log.info(`runner listening on ${address} (API docs at /docs)`);
