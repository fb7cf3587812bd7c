'use strict';
// bidguard from Node.js: an action limited to maxCount per window per key,
// with bidguard_rate_limit in the action's own transaction, retried after
// retry_after (doc/api.md, "Retrying").
//
//   cd examples/node && npm ci && node rate_limit.js --calls 10 --max 3 --per '1 second'
//
// It runs --calls actions, one after the other, each an INSERT into
// rate_limited_actions guarded by the limit, and prints one JSON line:
// {"calls": n, "refusals": n, "seconds": s}.  Connection: libpq's PG*
// variables, as worker.js.

const { Client } = require('pg');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let refusals = 0;

async function withRateLimit(client, key, maxCount, per, action) {
  for (;;) {
    await client.query('BEGIN');
    const { rows: [limit] } = await client.query(
      'SELECT allowed, extract(epoch FROM retry_after) AS retry FROM bidguard_rate_limit($1, $2, $3)',
      [key, maxCount, per]);
    if (limit.allowed) {
      const result = await action(client);   // in the same transaction
      await client.query('COMMIT');
      return result;
    }
    await client.query('ROLLBACK');
    refusals++;
    await sleep(Number(limit.retry) * 1000);
  }
}

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

async function main() {
  const calls = Number(option('calls', '10'));
  const maxCount = Number(option('max', '3'));
  const per = option('per', '1 second');
  const key = option('key', 'node:example');
  const client = new Client();
  await client.connect();
  await client.query(`CREATE TABLE IF NOT EXISTS rate_limited_actions (
      action_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  const start = Date.now();
  for (let i = 0; i < calls; i++) {
    await withRateLimit(client, key, maxCount, per,
      (c) => c.query('INSERT INTO rate_limited_actions (key) VALUES ($1)', [key]));
  }
  await client.end();
  console.log(JSON.stringify({ calls, refusals, seconds: (Date.now() - start) / 1000 }));
}

main().catch((err) => { console.error(err); process.exit(1); });
