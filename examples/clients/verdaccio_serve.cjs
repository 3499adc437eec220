// Runs verdaccio (installed by examples/clients.sh) on 127.0.0.1 with a free port, over
// HTTPS with the certificate named in the config, and prints
// `listening on https://localhost:PORT` on stdout once it accepts connections (a host name:
// npm through a proxy checks an IP host's certificate against the name "localhost").
//
// Usage: node verdaccio_serve.cjs VERDACCIO_DIR CONFIG_YAML
// (VERDACCIO_DIR: the folder whose node_modules holds verdaccio.) Stops on SIGTERM/SIGINT.
"use strict";
const path = require("node:path");

const [dir, configPath] = process.argv.slice(2);
if (!dir || !configPath) {
  console.error("usage: node verdaccio_serve.cjs VERDACCIO_DIR CONFIG_YAML");
  process.exit(2);
}
const { runServer } = require(path.join(path.resolve(dir), "node_modules", "verdaccio"));

runServer(path.resolve(configPath))
  .then((server) => {
    server.listen(0, "127.0.0.1", () => {
      console.log(`listening on https://localhost:${server.address().port}`);
    });
    const stop = () => {
      server.close(() => process.exit(0));
      // close() waits for idle keep-alive sockets; do not wait long for them.
      setTimeout(() => process.exit(0), 2000).unref();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  })
  .catch((e) => {
    console.error(`verdaccio_serve: ${e?.stack ?? e}`);
    process.exit(1);
  });
