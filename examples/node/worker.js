'use strict';
// bidguard example worker for Node.js: scanners and traders that race each
// other, and stay correct because bidguard guards the database.
//
//   cd examples/node && npm ci && node worker.js --scanners 3 --traders 3
//
// The options, the feed model, the retry rules and the JSON line printed at
// the end are those of examples/README.md (the Python and C clients do the
// same). --isolation is the scanners' level; trades always run at READ
// COMMITTED (see tradeOnce).
//
// The connection comes from libpq's environment variables, which node-pg
// reads: PGHOST (a host name, or a unix-socket directory such as
// /var/run/postgresql), PGPORT, PGDATABASE, PGUSER, PGPASSWORD (or ~/.pgpass).
// Unlike libpq, node-pg defaults to localhost:5432 when PGHOST is unset.
//
// The parent process parses the options, registers the bots' cooldowns, and
// forks one process per scanner and per trader (this same file, with a role
// argument). Each worker has its own connection, runs until the parent says
// stop, finishes the transaction it is in, and reports its counters back over
// the IPC channel. The parent prints the sums as one line of JSON.

const { fork } = require('node:child_process');
const { randomInt } = require('node:crypto');
const { constants: { signals } } = require('node:os');
const { Client } = require('pg');

// The isolation level goes into the BEGIN statement's text: it cannot be a
// query parameter, so it only ever comes from this whitelist.
const ISOLATION_LEVELS = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

// 40001 serialization_failure: at REPEATABLE READ and SERIALIZABLE, bidguard
// found that its answer depends on a row committed after this transaction's
// snapshot, and refused to act on stale data (at SERIALIZABLE, PostgreSQL's
// own checks can also raise it, on any statement or at COMMIT).
// 40P01 deadlock_detected: PostgreSQL broke a lock cycle by aborting this
// transaction.
// Either way the transaction was rolled back entirely: no bid, no trade, no
// audit event and no bidguard lock is left behind, so running it again from
// BEGIN, on a fresh snapshot, simply asks bidguard again on the data as it
// now is. What a rollback cannot undo is an effect outside the database, such
// as an order sent to the exchange: see tradeOnce.
const RETRYABLE = new Set(['40001', '40P01']);
const MAX_RETRIES = 20;

const DEFAULTS = {
  scanners: 2,
  traders: 2,
  seconds: 5,
  marketplace: 'example',
  postings: 20,
  bots: 4,
  'first-bot': 1,
  'cooldown-ms': 500,
  'exchange-ms': 20,
  isolation: 'read committed',
  client: 'node',
};

const USAGE = `usage: node worker.js [options]
  --scanners N         scanner processes, 0 = none (default ${DEFAULTS.scanners})
  --traders N          trading processes, 0 = none (default ${DEFAULTS.traders})
  --seconds S          how long the workers run (default ${DEFAULTS.seconds})
  --marketplace NAME   the marketplace id of every bid (default ${DEFAULTS.marketplace})
  --postings N         postings listed per feed batch (default ${DEFAULTS.postings})
  --bots N             bots traded, ids first-bot .. first-bot + N - 1 (default ${DEFAULTS.bots})
  --first-bot ID       the first bot id (default ${DEFAULTS['first-bot']})
  --cooldown-ms MS     each bot's cooldown, registered at start (default ${DEFAULTS['cooldown-ms']})
  --exchange-ms MS     how long the simulated exchange takes (default ${DEFAULTS['exchange-ms']})
  --isolation LEVEL    the scanners' level: read committed, repeatable read or
                       serializable (default ${DEFAULTS.isolation}); trades run at read committed
  --client NAME        tag written into bid_data and trade_data (default ${DEFAULTS.client})
Connection: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD.`;

// What every worker counts, and the parent sums, in the order printed.
const newCounters = () => ({
  bid_calls: 0, bids_created: 0, bids_existing: 0, bids_withdrawn: 0,
  trade_calls: 0, trades_executed: 0, trades_filled: 0, trades_failed: 0,
  trades_cooldown: 0, trades_busy: 0, orders_placed: 0, retries: 0, errors: 0,
});

class UsageError extends Error {}

function parseOptions(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    }
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const name = arg.slice(2);
    if (!arg.startsWith('--') || !Object.hasOwn(DEFAULTS, name)) {
      throw new UsageError(`unknown option: ${argv[i]}`);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      value = argv[++i];
    }
    opts[name] = value;
  }

  const int = (name, min) => {
    const v = String(opts[name]);
    if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
      throw new UsageError(`--${name} must be an integer >= ${min}, not '${v}'`);
    }
    return Number(v);
  };
  const text = (name) => {
    if (opts[name] === '') throw new UsageError(`--${name} must not be empty`);
    return opts[name];
  };

  const seconds = String(opts.seconds);
  if (!/^\d+(\.\d+)?$/.test(seconds) || Number(seconds) > 2147483) { // setTimeout's limit
    throw new UsageError(`--seconds must be a number from 0 to 2147483, not '${seconds}'`);
  }
  const isolation = String(opts.isolation).trim().toLowerCase().replace(/\s+/g, ' ');
  if (!Object.hasOwn(ISOLATION_LEVELS, isolation)) {
    throw new UsageError(`--isolation must be one of: ${Object.keys(ISOLATION_LEVELS).join(', ')}`);
  }
  // Bot ids are bigints: keep them exact as strings (node-pg returns int8 as
  // strings too, and sends strings as parameters unchanged).
  if (!/^-?\d+$/.test(String(opts['first-bot']))) {
    throw new UsageError('--first-bot must be an integer');
  }
  const bots = int('bots', 1);
  const firstBot = BigInt(opts['first-bot']);
  if (firstBot < -(2n ** 63n) || firstBot + BigInt(bots) - 1n > 2n ** 63n - 1n) {
    throw new UsageError('--first-bot .. --first-bot + --bots - 1 must fit in a bigint');
  }

  return {
    scanners: int('scanners', 0),
    traders: int('traders', 0),
    seconds: Number(seconds),
    marketplace: text('marketplace'),
    postings: int('postings', 1),
    botIds: Array.from({ length: bots }, (_, n) => String(firstBot + BigInt(n))),
    cooldownMs: int('cooldown-ms', 0),
    exchangeMs: int('exchange-ms', 0),
    isolation,
    client: text('client'),
  };
}

// A connection configured from the PG* environment variables; the
// application name only shows up in pg_stat_activity (PGAPPNAME wins).
function connect(name) {
  return new Client({ fallback_application_name: `bidguard-example-node ${name}` });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Run body(tx) in one transaction at the given isolation level (a key of
// ISOLATION_LEVELS). body returns { commit: true|false, ... }. The whole
// transaction, from BEGIN, is retried on 40001/40P01 (see RETRYABLE), unless
// body has set tx.noRetry: then, as for any other error, it is thrown.
async function transaction(worker, isolation, body) {
  for (let retry = 0; ; retry++) {
    const tx = { noRetry: false };
    await worker.db.query(`BEGIN ISOLATION LEVEL ${ISOLATION_LEVELS[isolation]}`);
    try {
      const outcome = await body(tx);
      await worker.db.query(outcome.commit ? 'COMMIT' : 'ROLLBACK');
      return outcome;
    } catch (err) {
      // After a failed statement (or a failed COMMIT) the server has aborted
      // the transaction; ROLLBACK ends it on our side too. If even that fails
      // the connection is gone, and the original error is the one to report.
      await worker.db.query('ROLLBACK').catch(() => {});
      if (!RETRYABLE.has(err.code)) throw err;
      if (tx.noRetry) {
        err.message = `not retried, the order was already placed: ${err.message}`;
        throw err;
      }
      if (retry >= MAX_RETRIES) {
        err.message = `gave up after ${MAX_RETRIES} retries: ${err.message}`;
        throw err;
      }
      worker.counters.retries++;
      await sleep(randomInt(1, 10 * (retry + 1) + 1)); // short random backoff
    }
  }
}

// ---------------------------------------------------------------- scanners

// The duplicate-bid incident: every scanner sees the same fresh postings at
// the same moment and bids on them. bidguard_create_bid takes the posting's
// lock before it looks, so exactly one caller creates the bid and every other
// one gets the same bid_id back (created = false).
async function scanOnce(worker) {
  const { db, opts, counters } = worker;
  // The feed: a batch of opts.postings postings every 100 ms, with ids
  // "<unix ms / 100>-<n>", the same for every scanner at the same moment.
  const posting = `${Math.floor(Date.now() / 100)}-${randomInt(opts.postings)}`;
  const withdrawIfExisting = randomInt(20) === 0; // "the posting changed"

  const outcome = await transaction(worker, opts.isolation, async () => {
    const { rows: [bid] } = await db.query(
      'SELECT bid_id, created, status FROM bidguard_create_bid($1, $2, $3::jsonb)',
      [opts.marketplace, posting, worker.tag],
    );
    if (bid.created) {
      // Ours: submit it (to the marketplace, then record it). The posting's
      // lock is still ours, so no other scanner can withdraw it meanwhile.
      await db.query("SELECT changed FROM bidguard_set_bid_status($1::bigint, 'submitted')",
        [bid.bid_id]);
      return { commit: true, created: true, withdrawn: false };
    }
    let withdrawn = false;
    if (withdrawIfExisting) {
      // withdrawn is true only for the one call that actually withdrew it.
      const { rows: [w] } = await db.query(
        "SELECT withdrawn FROM bidguard_withdraw_posting($1, $2, 'rescan')",
        [opts.marketplace, posting],
      );
      withdrawn = w.withdrawn;
    }
    return { commit: true, created: false, withdrawn };
  });

  // Counted only now that the transaction has committed.
  counters.bid_calls++;
  if (outcome.created) counters.bids_created++;
  else counters.bids_existing++;
  if (outcome.withdrawn) counters.bids_withdrawn++;
}

// ---------------------------------------------------------------- traders

// The simulated exchange: it takes opts.exchangeMs, rejects one order in ten,
// and counts the orders it was sent (orders_placed), committed or not. A real
// exchange gets clientOrderId as the order's client order id.
async function placeOrder(worker, clientOrderId) {
  worker.counters.orders_placed++;
  await sleep(worker.opts.exchangeMs);
  return randomInt(10) !== 0;
}

// The double-trade incident: two workers pass a bot's cooldown check at the
// same time and both trade. bidguard_try_trade takes the bot's lock inside
// the backend and checks the cooldown under it. Returns how many milliseconds
// to leave the bot alone.
//
// The trade transaction is always READ COMMITTED, whatever --isolation says.
// Once the order is on the exchange the transaction must commit: rolling it
// back and running it again would admit a new trade and place a second order.
// At READ COMMITTED nothing after bidguard_try_trade can fail with 40001 (the
// bot's lock already orders the admissions); at SERIALIZABLE, fill_trade or
// COMMIT can (predicate-lock conflicts with other bots' trades). bidguard's
// cooldown guarantee holds at every level either way.
async function tradeOnce(worker, bot) {
  const { db, opts, counters } = worker;

  const outcome = await transaction(worker, 'read committed', async (tx) => {
    // retry_after is an interval (NULL when busy): read it as milliseconds,
    // a float8 that node-pg turns into a JS number.
    const { rows: [t] } = await db.query(
      `SELECT trade_id, executed, reason, atomic_event_id,
              (extract(epoch FROM retry_after) * 1000)::float8 AS retry_after_ms
         FROM bidguard_try_trade($1::bigint, $2::jsonb, '0'::interval)`,
      [bot, worker.tag],
    );

    if (t.reason === 'executed') {
      // The trade is admitted and still open, and this transaction holds the
      // bot's lock until COMMIT. That is why the exchange call happens inside
      // the transaction: while the order is in flight, every other worker
      // asking for this bot gets 'busy', not a second admission, and there is
      // no TTL that could expire meanwhile. If we crash or ROLLBACK instead,
      // the trade row disappears and the cooldown is given back.
      //
      // atomic_event_id is the trade's idempotency key, so it is the order's
      // client order id: a resent order (after a timeout) is recognised by
      // the exchange as the same order, and any order on the exchange can be
      // matched to its row in bidguard_trades. An order whose id has no
      // committed trade (the COMMIT failed, the worker died) is one to look
      // up and cancel.
      //
      // From here on a failure is not retried: it is an error (see above).
      tx.noRetry = true;
      const accepted = await placeOrder(worker, t.atomic_event_id);
      if (accepted) {
        await db.query('SELECT changed FROM bidguard_fill_trade($1::bigint)', [t.trade_id]);
      } else {
        // A failed trade does not count toward the cooldown.
        await db.query("SELECT changed FROM bidguard_fail_trade($1::bigint, 'rejected by the exchange')",
          [t.trade_id]);
      }
      return { commit: true, reason: 'executed', filled: accepted, waitMs: t.retry_after_ms };
    }
    if (t.reason === 'cooldown') {
      // Traded too recently: retry_after is the time left.
      return { commit: true, reason: 'cooldown', waitMs: t.retry_after_ms };
    }
    // 'busy': another worker holds the bot's lock, i.e. is trading it right
    // now. retry_after is NULL; look again after a short pause.
    return { commit: false, reason: 'busy', waitMs: opts.exchangeMs };
  });

  counters.trade_calls++;
  if (outcome.reason === 'executed') {
    counters.trades_executed++;
    if (outcome.filled) counters.trades_filled++;
    else counters.trades_failed++;
  } else if (outcome.reason === 'cooldown') {
    counters.trades_cooldown++;
  } else {
    counters.trades_busy++;
  }
  return outcome.waitMs;
}

// ---------------------------------------------------------------- a worker process

async function runWorker(role, number, opts) {
  const worker = {
    opts,
    tag: JSON.stringify({ client: opts.client, worker: `${role}-${number}` }),
    counters: newCounters(),
    db: connect(`${role}-${number}`),
  };

  // Stop requests (the parent's 'stop', or a signal such as the terminal's
  // Ctrl-C) only set a flag: the loop finishes the transaction it is in.
  let stopping = false;
  let wake = () => {};
  const stop = () => { stopping = true; wake(); };
  const nap = (ms) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });
  let started;
  const go = new Promise((resolve) => { started = resolve; });
  process.on('message', (msg) => {
    if (msg.type === 'start') started();
    if (msg.type === 'stop') { stop(); started(); }
  });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('disconnect', stop); // the parent is gone

  let failed = false;
  const fail = (err) => {
    if (failed) return;
    failed = true;
    worker.counters.errors++;
    console.error(`${role}-${number}: error ${err.code || ''} ${err.message}`);
    stop();
  };
  // An idle connection that breaks is reported as an 'error' event, not as
  // a rejected query; without a listener it would crash the process.
  worker.db.on('error', fail);

  try {
    await worker.db.connect();
    if (process.connected) process.send({ type: 'ready' });
    await go;
    if (role === 'scanner') {
      while (!stopping) await scanOnce(worker);
    } else {
      const due = new Map(opts.botIds.map((bot) => [bot, 0]));
      while (!stopping) {
        for (const bot of opts.botIds) {
          if (stopping) break;
          if (due.get(bot) > performance.now()) continue;
          const waitMs = await tradeOnce(worker, bot);
          due.set(bot, performance.now() + waitMs);
        }
        // When no bot is due, sleep until the first one is.
        const first = Math.min(...due.values()) - performance.now();
        if (!stopping && first > 0) await nap(first);
      }
    }
  } catch (err) {
    fail(err);
  }
  await worker.db.end().catch(() => {});
  process.exitCode = failed ? 1 : 0;
  if (process.connected) {
    process.send({ type: 'result', counters: worker.counters }, () => process.disconnect());
  }
}

// ---------------------------------------------------------------- the parent

async function registerCooldowns(opts) {
  const db = connect('setup');
  await db.connect();
  try {
    for (let retry = 0; ; retry++) {
      try {
        await db.query('BEGIN');
        for (const bot of opts.botIds) {
          await db.query('SELECT bidguard_set_cooldown($1, $2::interval)',
            [bot, `${opts.cooldownMs} milliseconds`]);
        }
        await db.query('COMMIT');
        return;
      } catch (err) {
        await db.query('ROLLBACK').catch(() => {});
        if (!RETRYABLE.has(err.code) || retry >= MAX_RETRIES) throw err;
        await sleep(randomInt(1, 10 * (retry + 1) + 1));
      }
    }
  } finally {
    await db.end().catch(() => {});
  }
}

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`worker.js: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }

  // On SIGINT/SIGTERM: tell the workers to stop (each finishes its current
  // transaction), wait for them, and exit non-zero without a result line.
  // A second signal kills them outright.
  let interrupted = null;
  let onInterrupt = () => {};
  const children = [];
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      if (interrupted) {
        for (const c of children) c.kill('SIGKILL');
        process.exit(128 + signals[signal]);
      }
      interrupted = signal;
      console.error(`worker.js: ${signal}, stopping the workers`);
      onInterrupt();
    });
  }

  try {
    await registerCooldowns(opts);
  } catch (err) {
    console.error(`worker.js: registering the cooldowns failed: ${err.code || ''} ${err.message}`);
    process.exit(1);
  }
  if (interrupted) process.exit(128 + signals[interrupted]);

  const roles = [
    ...Array.from({ length: opts.scanners }, (_, i) => ['scanner', i + 1]),
    ...Array.from({ length: opts.traders }, (_, i) => ['trader', i + 1]),
  ];
  const workers = roles.map(([role, number]) => {
    const child = fork(__filename, ['--worker', role, String(number), JSON.stringify(opts)]);
    children.push(child);
    let result = null;
    let markReady;
    const ready = new Promise((resolve) => { markReady = resolve; });
    child.on('message', (msg) => {
      if (msg.type === 'ready') markReady();
      if (msg.type === 'result') result = msg.counters;
    });
    // 'close' comes after the process has exited and its IPC channel is
    // closed, so a result it sent has been received by then.
    const done = new Promise((resolve) => child.on('close', (code, signal) => {
      markReady();
      if (result === null || code !== 0) {
        const what = result === null ? 'crashed' : 'failed';
        console.error(`worker.js: ${role}-${number} ${what} (exit ${signal || code})`);
      }
      // A worker that died without reporting counts as one error.
      resolve(result ?? { errors: 1 });
    }));
    return { child, ready, done };
  });

  const stopAll = () => {
    for (const { child } of workers) if (child.connected) child.send({ type: 'stop' });
  };
  const interruption = new Promise((resolve) => { onInterrupt = () => { stopAll(); resolve(); }; });

  // Start everybody at once, once all are connected, and let them run.
  await Promise.race([Promise.all(workers.map((w) => w.ready)), interruption]);
  if (!interrupted) {
    for (const { child } of workers) if (child.connected) child.send({ type: 'start' });
    await Promise.race([sleep(opts.seconds * 1000), interruption]);
  }
  stopAll();
  // A worker that does not come back is killed (its transaction rolls back).
  const grace = setTimeout(() => {
    for (const { child } of workers) child.kill('SIGKILL');
  }, 10000 + opts.exchangeMs);
  const results = await Promise.all(workers.map((w) => w.done));
  clearTimeout(grace);

  const totals = {
    client: opts.client, scanners: opts.scanners, traders: opts.traders,
    seconds: opts.seconds, isolation: opts.isolation,
    ...newCounters(),
  };
  for (const counters of results) {
    for (const [key, n] of Object.entries(counters)) totals[key] += n;
  }
  if (interrupted) {
    console.error(`worker.js: interrupted; partial totals: ${JSON.stringify(totals)}`);
    process.exit(128 + signals[interrupted]);
  }
  process.stdout.write(JSON.stringify(totals) + '\n');
  process.exit(totals.errors > 0 ? 1 : 0);
}

if (process.argv[2] === '--worker' && process.send) {
  runWorker(process.argv[3], Number(process.argv[4]), JSON.parse(process.argv[5]));
} else {
  main().catch((err) => {
    console.error(`worker.js: ${err.stack || err}`);
    process.exit(1);
  });
}
