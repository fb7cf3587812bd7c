/*
 * bench/redis_peer/redis_peer.c — the seed design as a benchmark peer: a Redis
 * lock around check-then-insert in PostgreSQL, exactly as the two incidents'
 * fixes did it (shared/background: the bid lock manager and the trade lock),
 * so that bidguard can be measured against it on the same machine.
 *
 *   redis_peer -w bids|trades|rate -c CLIENTS -T SECONDS [-D postings=N] [-D bots=N]
 *              [-D keys=N] [--redis HOST:PORT | --redis /path/to/redis.sock] [--log FILE]
 *              [--tx] [--ttl MS]
 *
 * PostgreSQL is reached through libpq's environment (PGHOST, PGPORT,
 * PGDATABASE, PGUSER ...), Redis at --redis (default 127.0.0.1:6379; an
 * argument with a '/' is a unix socket).  The tables come from
 * bench/redis_peer/schema.sql; bench/redis_peer/reset.sql empties them and
 * bench/redis_peer/check.sql checks the invariants afterwards.
 *
 * Each of the CLIENTS clients is a thread with its own PostgreSQL connection
 * and its own Redis connection.  It prepares its statements once
 * (PQprepare), loads the release script once (SCRIPT LOAD, then EVALSHA),
 * and then runs one operation after the other, back to back, for SECONDS.
 *
 * One operation, the seed's protocol
 * ----------------------------------
 * bids (-w bids): a posting p drawn uniformly from 1..postings, as
 * bench/create_bid.pgbench draws it (marketplace 'bench', posting 'p<p>').
 *   1. SET bid_lock:bench:p<p> <token> NX PX 30000
 *      <token> is 32 random hex digits, new for every operation (the seed's
 *      uuid4).  Not set: the posting is locked by another client; the
 *      operation ends as "busy" at once.  The seed raised
 *      LockAcquisitionError and the scanner moved on to the next posting; we
 *      give up the same way (no retry, no sleep) and count it.
 *   2. SELECT bid_id FROM peer_redis_bids WHERE marketplace_id = $1 AND
 *      posting_id = $2 AND status IN ('pending','submitted') LIMIT 1
 *      A row: "existing".  None: 3.
 *   3. INSERT INTO peer_redis_bids (marketplace_id, posting_id) VALUES ($1, $2)
 *      RETURNING bid_id: "created".
 *   4. Release: EVALSHA of
 *        if redis.call("get", KEYS[1]) == ARGV[1] then
 *            return redis.call("del", KEYS[1]) else return 0 end
 *      with the key and this operation's token.
 * trades (-w trades): a bot b drawn uniformly from 1..bots, as
 * bench/try_trade.pgbench draws it.
 *   1. SET bot_trade_lock:<b> <token> NX PX 30000; not set: "busy".
 *   2. The cooldown check, one statement reading the bot's cooldown from
 *      peer_redis_bots and the bot's last trade,
 *        max(coalesce(filled_at, created_at)) FROM peer_redis_trades
 *        WHERE bot_id = $1,
 *      compared with the server's clock_timestamp() (not the client's clock:
 *      the seed compared in Python, one host; here the server's clock is the
 *      one that also stamps created_at).  Inside the cooldown: "cooldown".
 *   3. INSERT INTO peer_redis_trades (bot_id, created_at)
 *      VALUES ($1, clock_timestamp()) RETURNING trade_id: "executed".
 *   4. Release as for bids.
 * rate (-w rate): a key k drawn uniformly from 1..keys, limited to 100 actions
 * per second, as bench/rate_limit.pgbench limits it with bidguard_rate_limit.
 *   1. EVALSHA of a GCRA script (redis-cell's algorithm, in Lua): the key
 *      keeps its theoretical arrival time; emission interval 10 ms, burst
 *      100; the server's TIME.  Refused: "limited", nothing else happens.
 *   2. Admitted: INSERT INTO peer_redis_actions (key) VALUES ($1), the action
 *      the limit protects (autocommit).  Unlike bidguard's, the unit is spent
 *      even if the insert fails: Redis knows nothing of the transaction.
 *
 * The statements of steps 2 and 3 run by default as autocommit statements,
 * each its own transaction: the lock is what serialises them, and this is
 * the cheapest form the protocol allows (2 PostgreSQL and 2 Redis round
 * trips per operation that gets the lock).  --tx runs them as the seed's
 * SQLAlchemy session did: BEGIN; the check (for bids with FOR UPDATE, the
 * seed's with_for_update()); the insert; COMMIT — 2 more round trips.  In
 * both forms the insert is committed before the lock is released, so the next
 * holder's check sees it.
 *
 * Failure modes of the protocol (what bidguard does not have)
 * -----------------------------------------------------------
 * - TTL expiry while the work runs: if steps 2-3 take longer than the TTL
 *   (a stalled client, a GC or VM pause, a slow or blocked PostgreSQL, a
 *   network partition), the key expires, a second client acquires it, and
 *   both check and insert: a duplicate active bid, or two trades inside the
 *   cooldown.  Nothing in PostgreSQL stops it here (the tables have no unique
 *   or exclusion constraint, on purpose).  With a 30 s TTL and sub-millisecond
 *   work this does not happen in the benchmark; --ttl MS makes it possible.
 * - Releasing someone else's lock: the token prevents it.  A client whose
 *   lock has expired and been taken by another finds a different token under
 *   the key, and the compare-and-delete script leaves the key alone (returns
 *   0).  Counted as "lock lost at release"; a plain DEL (the seed's trade
 *   lock stored the constant "locked") would have released the other
 *   client's lock and widened the race.
 * - A client that dies between SET and release leaves the posting or bot
 *   locked for the whole TTL: every other client gets "busy" for 30 s.
 * - Redis and PostgreSQL do not commit together: a Redis failover (the
 *   replica is asynchronous) or restart without persistence forgets held
 *   locks, and the guarantee with them.
 *
 * What is measured
 * ----------------
 * Every operation, from before the SET to after the release (or after the
 * failed SET, for "busy"), is timed with clock_gettime(CLOCK_MONOTONIC) and
 * kept in a per-client array; at the end they are merged and sorted for the
 * percentiles (nearest rank).  Throughput counts every operation that ended
 * as one of the outcomes, busy included (as bidguard_try_trade's 'busy' is a
 * transaction to pgbench), over the time from the moment all clients are
 * connected and prepared to the moment the last one stops; failed operations
 * (an error from PostgreSQL or Redis) are counted apart.  The output follows
 * pgbench's lines, so the same awk reads both:
 *   number of transactions actually processed: N
 *   number of failed transactions: N (x.xxx%)
 *   latency average = X ms / latency stddev = X ms
 *   latency p50 = X ms / latency p90 = X ms / latency p99 = X ms
 *   tps = X (without initial connection time)
 *   outcome created = N / outcome existing = N / outcome busy = N   (bids)
 *   outcome executed = N / outcome cooldown = N / outcome busy = N  (trades)
 *   lock lost at release = N
 * --log FILE writes each completed operation's latency in whole microseconds,
 * one a line (clients one after the other), for percentile scripts that read
 * pgbench's per-transaction logs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#define MARKETPLACE "bench"

/* GCRA: KEYS[1], ARGV[1] = limit, ARGV[2] = period in ms; {1} admitted, {0} not */
static const char gcra_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 "
    "local limit = tonumber(ARGV[1]) local period = tonumber(ARGV[2]) "
    "local interval = period / limit "
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now "
    "if tat < now then tat = now end "
    "local new_tat = tat + interval "
    "if new_tat - period > now then return 0 end "
    "redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(period)) "
    "return 1";

static const char release_script[] =
    "if redis.call(\"get\", KEYS[1]) == ARGV[1] then "
    "return redis.call(\"del\", KEYS[1]) else return 0 end";

/* ---- options ---- */
enum workload { W_BIDS, W_TRADES, W_RATE };
static enum workload opt_workload = W_BIDS;
static int opt_clients = 1;
static int opt_seconds = 10;
static long opt_postings = 100;
static long opt_bots = 10;
static long opt_keys = 10;
static const char *opt_redis = "127.0.0.1:6379";
static const char *opt_log;
static bool opt_tx;
static long opt_ttl_ms = 30000;

/* ---- shared run state ---- */
static pthread_barrier_t barrier_ready, barrier_go;
static struct timespec run_start, run_deadline;
static volatile int abort_run;

enum outcome { O_OK, O_EXISTING, O_BUSY, O_FAILED, O_FATAL };

typedef struct Client
{
    int         id;
    pthread_t   thread;
    PGconn     *pg;
    redisContext *rd;
    char        sha[41];        /* SHA1 of the release script */
    char        gcra_sha[41];   /* SHA1 of the GCRA script (-w rate) */
    uint64_t    rng[4];         /* xoshiro256** */

    uint64_t   *lat;            /* ns per completed operation */
    size_t      nlat, caplat;

    long        n_ok;           /* created / executed */
    long        n_existing;     /* found existing / cooldown */
    long        n_busy;
    long        n_failed;
    long        n_lost;         /* release found the lock gone or taken */
    struct timespec end;
    char        err[512];
    bool        fatal;
} Client;

/* ---- small helpers ---- */
static double
ts_diff(const struct timespec *a, const struct timespec *b) /* b - a, seconds */
{
    return (double) (b->tv_sec - a->tv_sec) + (double) (b->tv_nsec - a->tv_nsec) / 1e9;
}

static uint64_t
ts_ns(const struct timespec *t)
{
    return (uint64_t) t->tv_sec * 1000000000u + (uint64_t) t->tv_nsec;
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in 1..n (Lemire's multiply; the bias is below 2^-40 for our n) */
static long
rng_range(uint64_t s[4], long n)
{
    return (long) (((unsigned __int128) rng_next(s) * (uint64_t) n) >> 64) + 1;
}

static void
make_token(Client *c, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t    a = rng_next(c->rng), b = rng_next(c->rng);

    for (int i = 0; i < 16; i++)
    {
        out[i] = hex[(a >> (4 * i)) & 15];
        out[16 + i] = hex[(b >> (4 * i)) & 15];
    }
    out[32] = '\0';
}

static void
record(Client *c, uint64_t ns)
{
    if (c->nlat == c->caplat)
    {
        size_t      cap = c->caplat ? c->caplat * 2 : 65536;
        uint64_t   *p = realloc(c->lat, cap * sizeof *p);

        if (!p)
        {
            fprintf(stderr, "redis_peer: out of memory\n");
            exit(1);
        }
        c->lat = p;
        c->caplat = cap;
    }
    c->lat[c->nlat++] = ns;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t    x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}

/* ---- connections ---- */
static redisContext *
redis_connect(char *err, size_t errlen)
{
    redisContext *rd;
    struct timeval tv = {10, 0};

    if (strchr(opt_redis, '/'))
        rd = redisConnectUnixWithTimeout(opt_redis, tv);
    else
    {
        char        host[256];
        const char *colon = strrchr(opt_redis, ':');
        int         port = 6379;
        size_t      hl = colon ? (size_t) (colon - opt_redis) : strlen(opt_redis);

        if (hl >= sizeof host)
            hl = sizeof host - 1;
        memcpy(host, opt_redis, hl);
        host[hl] = '\0';
        if (colon)
            port = atoi(colon + 1);
        rd = redisConnectWithTimeout(host, port, tv);
    }
    if (!rd || rd->err)
    {
        snprintf(err, errlen, "cannot connect to Redis at %s: %s", opt_redis,
                 rd ? rd->errstr : "out of memory");
        if (rd)
            redisFree(rd);
        return NULL;
    }
    return rd;
}

static PGconn *
pg_connect(char *err, size_t errlen)
{
    const char *const keys[] = {"fallback_application_name", NULL};
    const char *const vals[] = {"redis_peer", NULL};
    PGconn     *pg = PQconnectdbParams(keys, vals, 0);

    if (PQstatus(pg) != CONNECTION_OK)
    {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static bool
pg_prepare(Client *c, const char *name, const char *sql, int nparams)
{
    PGresult   *r = PQprepare(c->pg, name, sql, nparams, NULL);
    bool        ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    if (!ok)
        snprintf(c->err, sizeof c->err, "PREPARE %s: %s", name, PQerrorMessage(c->pg));
    PQclear(r);
    return ok;
}

static bool
load_script(Client *c)
{
    redisReply *r = redisCommand(c->rd, "SCRIPT LOAD %s",
                                 opt_workload == W_RATE ? gcra_script : release_script);
    bool        ok = r && r->type == REDIS_REPLY_STRING && r->len == 40;

    if (ok)
        memcpy(opt_workload == W_RATE ? c->gcra_sha : c->sha, r->str, 41);
    else
        snprintf(c->err, sizeof c->err, "SCRIPT LOAD: %s",
                 r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : c->rd->errstr);
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool
client_setup(Client *c)
{
    if (!(c->pg = pg_connect(c->err, sizeof c->err)))
        return false;
    if (!(c->rd = redis_connect(c->err, sizeof c->err)))
        return false;
    if (!load_script(c))
        return false;
    if (opt_tx && (!pg_prepare(c, "begin", "BEGIN", 0) ||
                   !pg_prepare(c, "commit", "COMMIT", 0)))
        return false;
    if (opt_workload == W_RATE)
        return pg_prepare(c, "insert", "INSERT INTO peer_redis_actions (key) VALUES ($1)", 1);
    if (opt_workload == W_BIDS)
        return pg_prepare(c, "check",
                          opt_tx ?
                          "SELECT bid_id FROM peer_redis_bids"
                          " WHERE marketplace_id = $1 AND posting_id = $2"
                          " AND status IN ('pending', 'submitted') LIMIT 1 FOR UPDATE" :
                          "SELECT bid_id FROM peer_redis_bids"
                          " WHERE marketplace_id = $1 AND posting_id = $2"
                          " AND status IN ('pending', 'submitted') LIMIT 1", 2) &&
            pg_prepare(c, "insert",
                       "INSERT INTO peer_redis_bids (marketplace_id, posting_id)"
                       " VALUES ($1, $2) RETURNING bid_id", 2);
    /* t: inside the cooldown; f or NULL (no trade yet): allowed; no row: unknown bot */
    return pg_prepare(c, "check",
                      "SELECT (SELECT max(coalesce(t.filled_at, t.created_at))"
                      "          FROM peer_redis_trades AS t WHERE t.bot_id = b.bot_id)"
                      "       > clock_timestamp() - b.cooldown"
                      "  FROM peer_redis_bots AS b WHERE b.bot_id = $1", 1) &&
        pg_prepare(c, "insert",
                   "INSERT INTO peer_redis_trades (bot_id, created_at)"
                   " VALUES ($1, clock_timestamp()) RETURNING trade_id", 1);
}

/* ---- one operation ---- */

/* SET key token NX PX ttl: 1 acquired, 0 busy, -1 error, -2 connection lost */
static int
lock_acquire(Client *c, const char *key, const char *token)
{
    redisReply *r = redisCommand(c->rd, "SET %s %s NX PX %ld", key, token, opt_ttl_ms);
    int         rc;

    if (!r)
    {
        snprintf(c->err, sizeof c->err, "Redis: %s", c->rd->errstr);
        return -2;
    }
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
        rc = 1;
    else if (r->type == REDIS_REPLY_NIL)
        rc = 0;
    else
    {
        snprintf(c->err, sizeof c->err, "SET: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* compare-and-delete: 1 released, 0 lost (gone or another's), -1 error, -2 connection lost */
static int
lock_release(Client *c, const char *key, const char *token)
{
    for (int attempt = 0; attempt < 2; attempt++)
    {
        redisReply *r = redisCommand(c->rd, "EVALSHA %s 1 %s %s", c->sha, key, token);
        int         rc;

        if (!r)
        {
            snprintf(c->err, sizeof c->err, "Redis: %s", c->rd->errstr);
            return -2;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 && attempt == 0)
        {
            /* the script cache was flushed: load it again, once */
            freeReplyObject(r);
            if (!load_script(c))
                return -1;
            continue;
        }
        if (r->type == REDIS_REPLY_INTEGER)
            rc = r->integer == 1 ? 1 : 0;
        else
        {
            snprintf(c->err, sizeof c->err, "EVALSHA: %s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            rc = -1;
        }
        freeReplyObject(r);
        return rc;
    }
    return -1;
}

/* run a prepared statement; NULL (error in c->err) unless it returned tuples or OK */
static PGresult *
pg_exec(Client *c, const char *stmt, int nparams, const char *const *params)
{
    PGresult   *r = PQexecPrepared(c->pg, stmt, nparams, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    snprintf(c->err, sizeof c->err, "%s: %s", stmt, PQerrorMessage(c->pg));
    PQclear(r);
    return NULL;
}

static bool
pg_simple(Client *c, const char *stmt)
{
    PGresult   *r = pg_exec(c, stmt, 0, NULL);

    if (r)
        PQclear(r);
    return r != NULL;
}

/*
 * The work under the lock: check, and insert unless the check says no.
 * Returns O_OK (created / executed), O_EXISTING (found existing / cooldown)
 * or O_FAILED.
 */
static enum outcome
locked_work(Client *c, const char *const *params, int nparams)
{
    PGresult   *r;
    enum outcome out;

    if (opt_tx && !pg_simple(c, "begin"))
        goto fail;
    if (!(r = pg_exec(c, "check", nparams, params)))
        goto fail;
    if (opt_workload == W_BIDS)
        out = PQntuples(r) > 0 ? O_EXISTING : O_OK;
    else if (PQntuples(r) != 1)
    {
        snprintf(c->err, sizeof c->err, "bot %s is not in peer_redis_bots", params[0]);
        PQclear(r);
        goto fail;
    }
    else
        out = (!PQgetisnull(r, 0, 0) && PQgetvalue(r, 0, 0)[0] == 't') ? O_EXISTING : O_OK;
    PQclear(r);
    if (out == O_OK)
    {
        if (!(r = pg_exec(c, "insert", nparams, params)))
            goto fail;
        PQclear(r);
    }
    if (opt_tx && !pg_simple(c, "commit"))
        goto fail;
    return out;

fail:
    if (opt_tx && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return O_FAILED;
}

/* -w rate: the GCRA decision in Redis, then the action in PostgreSQL */
static enum outcome
rate_operation(Client *c)
{
    char        key[64];
    const char *params[1];
    redisReply *r;
    long long   admitted;
    PGresult   *res;

    snprintf(key, sizeof key, "rate:%ld", rng_range(c->rng, opt_keys));
    r = redisCommand(c->rd, "EVALSHA %s 1 %s 100 1000", c->gcra_sha, key);
    if (!r)
    {
        snprintf(c->err, sizeof c->err, "Redis: %s", c->rd->errstr);
        return O_FATAL;
    }
    if (r->type != REDIS_REPLY_INTEGER)
    {
        snprintf(c->err, sizeof c->err, "EVALSHA: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return O_FAILED;
    }
    admitted = r->integer;
    freeReplyObject(r);
    if (!admitted)
        return O_EXISTING;
    params[0] = key;
    if (!(res = pg_exec(c, "insert", 1, params)))
        return PQstatus(c->pg) != CONNECTION_OK ? O_FATAL : O_FAILED;
    PQclear(res);
    return O_OK;
}

static enum outcome
one_operation(Client *c)
{
    char        key[128], token[33], arg[32];
    const char *params[2];
    int         nparams, got, rel;
    enum outcome out;

    if (opt_workload == W_RATE)
        return rate_operation(c);
    if (opt_workload == W_BIDS)
    {
        snprintf(arg, sizeof arg, "p%ld", rng_range(c->rng, opt_postings));
        snprintf(key, sizeof key, "bid_lock:%s:%s", MARKETPLACE, arg);
        params[0] = MARKETPLACE;
        params[1] = arg;
        nparams = 2;
    }
    else
    {
        snprintf(arg, sizeof arg, "%ld", rng_range(c->rng, opt_bots));
        snprintf(key, sizeof key, "bot_trade_lock:%s", arg);
        params[0] = arg;
        nparams = 1;
    }
    make_token(c, token);

    got = lock_acquire(c, key, token);
    if (got == 0)
        return O_BUSY;
    if (got < 0)
        return got == -2 ? O_FATAL : O_FAILED;

    out = locked_work(c, params, nparams);
    if (PQstatus(c->pg) != CONNECTION_OK)
        out = O_FATAL;

    /* released whatever happened, as the seed's finally: did */
    rel = lock_release(c, key, token);
    if (rel == 0)
        c->n_lost++;
    else if (rel == -2)
        return O_FATAL;
    else if (rel == -1)
        return O_FAILED;
    return out;
}

static void *
client_main(void *arg)
{
    Client     *c = arg;
    struct timespec a, b;

    if (!client_setup(c))
        c->fatal = true;
    pthread_barrier_wait(&barrier_ready);
    pthread_barrier_wait(&barrier_go);
    if (c->fatal || abort_run)
    {
        clock_gettime(CLOCK_MONOTONIC, &c->end);
        return NULL;
    }

    clock_gettime(CLOCK_MONOTONIC, &a);
    while (!abort_run)
    {
        enum outcome out = one_operation(c);

        clock_gettime(CLOCK_MONOTONIC, &b);
        switch (out)
        {
            case O_OK:
                c->n_ok++;
                break;
            case O_EXISTING:
                c->n_existing++;
                break;
            case O_BUSY:
                c->n_busy++;
                break;
            case O_FAILED:
                c->n_failed++;
                if (c->n_failed <= 3)
                    fprintf(stderr, "redis_peer: client %d: %s\n", c->id, c->err);
                break;
            case O_FATAL:
                c->n_failed++;
                c->fatal = true;
                break;
        }
        if (c->fatal)
            break;
        if (out != O_FAILED)
            record(c, ts_ns(&b) - ts_ns(&a));
        if (b.tv_sec > run_deadline.tv_sec ||
            (b.tv_sec == run_deadline.tv_sec && b.tv_nsec >= run_deadline.tv_nsec))
            break;
        a = b;
    }
    c->end = b;
    return NULL;
}

/* ---- set-up checks, main ---- */
static bool
check_tables(void)
{
    char        err[512], sql[256];
    PGconn     *pg = pg_connect(err, sizeof err);
    PGresult   *r;
    bool        ok;

    if (!pg)
    {
        fprintf(stderr, "redis_peer: %s", err);
        return false;
    }
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s LIMIT 0",
             opt_workload == W_BIDS ? "peer_redis_bids" :
             opt_workload == W_RATE ? "peer_redis_actions" : "peer_redis_trades, peer_redis_bots");
    r = PQexec(pg, sql);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "redis_peer: %s(load bench/redis_peer/schema.sql first)\n",
                PQerrorMessage(pg));
    PQclear(r);
    if (ok && opt_workload == W_TRADES)
    {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM peer_redis_bots WHERE bot_id BETWEEN 1 AND %ld", opt_bots);
        r = PQexec(pg, sql);
        ok = PQresultStatus(r) == PGRES_TUPLES_OK && atol(PQgetvalue(r, 0, 0)) == opt_bots;
        if (!ok)
            fprintf(stderr, "redis_peer: peer_redis_bots lacks some of the bots 1..%ld"
                    " (load schema.sql with -v bots=%ld)\n", opt_bots, opt_bots);
        PQclear(r);
    }
    PQfinish(pg);
    return ok;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: redis_peer -w bids|trades|rate -c CLIENTS -T SECONDS [-D postings=N] [-D bots=N] [-D keys=N]\n"
            "                  [--redis HOST:PORT|SOCKET_PATH] [--log FILE] [--tx] [--ttl MS]\n"
            "PostgreSQL from libpq's environment (PGHOST, PGPORT, PGDATABASE, ...);\n"
            "Redis default 127.0.0.1:6379.  Defaults: -c 1 -T 10, postings=100, bots=10,\n"
            "autocommit statements, TTL 30000 ms.  See the header of redis_peer.c.\n");
}

static long
parse_long(const char *s, const char *what, long min)
{
    char       *end;
    long        v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < min)
    {
        fprintf(stderr, "redis_peer: invalid %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"log", required_argument, NULL, 'l'},
        {"tx", no_argument, NULL, 'x'},
        {"ttl", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}
    };
    int         opt;
    Client     *clients;
    struct timespec conn_start, run_end;
    uint64_t   *all;
    size_t      nall = 0;
    long        ok = 0, existing = 0, busy = 0, failed = 0, lost = 0, done;
    double      secs, sum = 0, sumsq = 0, mean, sd;
    bool        fatal = false;

    while ((opt = getopt_long(argc, argv, "w:c:T:D:h", longopts, NULL)) != -1)
    {
        switch (opt)
        {
            case 'w':
                if (strcmp(optarg, "bids") == 0)
                    opt_workload = W_BIDS;
                else if (strcmp(optarg, "trades") == 0)
                    opt_workload = W_TRADES;
                else if (strcmp(optarg, "rate") == 0)
                    opt_workload = W_RATE;
                else
                {
                    fprintf(stderr, "redis_peer: -w bids, trades or rate, not %s\n", optarg);
                    return 2;
                }
                break;
            case 'c':
                opt_clients = (int) parse_long(optarg, "client count", 1);
                break;
            case 'T':
                opt_seconds = (int) parse_long(optarg, "duration", 1);
                break;
            case 'D':
                if (strncmp(optarg, "postings=", 9) == 0)
                    opt_postings = parse_long(optarg + 9, "postings", 1);
                else if (strncmp(optarg, "bots=", 5) == 0)
                    opt_bots = parse_long(optarg + 5, "bots", 1);
                else if (strncmp(optarg, "keys=", 5) == 0)
                    opt_keys = parse_long(optarg + 5, "keys", 1);
                else
                {
                    fprintf(stderr, "redis_peer: unknown variable in -D %s (postings, bots)\n", optarg);
                    return 2;
                }
                break;
            case 'r':
                opt_redis = optarg;
                break;
            case 'l':
                opt_log = optarg;
                break;
            case 'x':
                opt_tx = true;
                break;
            case 't':
                opt_ttl_ms = parse_long(optarg, "TTL", 1);
                break;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind < argc)
    {
        usage(stderr);
        return 2;
    }
    if (opt_clients > 10000)
    {
        fprintf(stderr, "redis_peer: too many clients\n");
        return 2;
    }
    if (!check_tables())
        return 1;

    clients = calloc((size_t) opt_clients, sizeof *clients);
    if (!clients)
        return 1;
    pthread_barrier_init(&barrier_ready, NULL, (unsigned) opt_clients + 1);
    pthread_barrier_init(&barrier_go, NULL, (unsigned) opt_clients + 1);

    clock_gettime(CLOCK_MONOTONIC, &conn_start);
    for (int i = 0; i < opt_clients; i++)
    {
        Client     *c = &clients[i];
        int         e;

        c->id = i;
        if (getrandom(c->rng, sizeof c->rng, 0) != (ssize_t) sizeof c->rng)
        {
            fprintf(stderr, "redis_peer: getrandom failed\n");
            return 1;
        }
        c->rng[0] |= 1;             /* never the all-zero state */
        if ((e = pthread_create(&c->thread, NULL, client_main, c)) != 0)
        {
            fprintf(stderr, "redis_peer: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    pthread_barrier_wait(&barrier_ready);
    for (int i = 0; i < opt_clients; i++)
        if (clients[i].fatal)
        {
            fprintf(stderr, "redis_peer: client %d: %s\n", i, clients[i].err);
            fatal = true;
        }
    abort_run = fatal;
    clock_gettime(CLOCK_MONOTONIC, &run_start);
    run_deadline = run_start;
    run_deadline.tv_sec += opt_seconds;
    pthread_barrier_wait(&barrier_go);

    run_end = run_start;
    for (int i = 0; i < opt_clients; i++)
    {
        Client     *c = &clients[i];

        pthread_join(c->thread, NULL);
        if (c->fatal && !fatal)
        {
            fprintf(stderr, "redis_peer: client %d aborted: %s\n", i, c->err);
            fatal = true;
        }
        if (ts_diff(&run_end, &c->end) > 0)
            run_end = c->end;
        ok += c->n_ok;
        existing += c->n_existing;
        busy += c->n_busy;
        failed += c->n_failed;
        lost += c->n_lost;
        nall += c->nlat;
    }
    if (fatal)
        return 1;

    all = malloc((nall ? nall : 1) * sizeof *all);
    if (!all)
        return 1;
    nall = 0;
    for (int i = 0; i < opt_clients; i++)
    {
        memcpy(all + nall, clients[i].lat, clients[i].nlat * sizeof *all);
        nall += clients[i].nlat;
    }
    if (opt_log)
    {
        FILE       *f = fopen(opt_log, "w");

        if (!f)
        {
            fprintf(stderr, "redis_peer: cannot write %s: %s\n", opt_log, strerror(errno));
            return 1;
        }
        for (size_t i = 0; i < nall; i++)
            fprintf(f, "%" PRIu64 "\n", (all[i] + 500) / 1000);
        if (fclose(f) != 0)
        {
            fprintf(stderr, "redis_peer: cannot write %s: %s\n", opt_log, strerror(errno));
            return 1;
        }
    }
    for (size_t i = 0; i < nall; i++)
    {
        double      ms = (double) all[i] / 1e6;

        sum += ms;
        sumsq += ms * ms;
    }
    qsort(all, nall, sizeof *all, cmp_u64);

    done = ok + existing + busy;
    secs = ts_diff(&run_start, &run_end);
    mean = nall ? sum / (double) nall : 0;
    sd = nall ? sqrt(fmax(0, sumsq / (double) nall - mean * mean)) : 0;

#define PCT(p) (nall ? (double) all[(size_t) ceil((p) / 100.0 * (double) nall) - 1] / 1e6 : 0.0)
    if (opt_workload == W_RATE)
        printf("transaction type: redis_peer rate (GCRA in Lua, 100 per second per key; insert when admitted)\n"
               "keys: %ld\n", opt_keys);
    else
        printf("transaction type: redis_peer %s (SET NX PX lock, check, insert, Lua compare-and-delete release)\n",
               opt_workload == W_BIDS ? "bids" : "trades");
    if (opt_workload == W_RATE)
        ;
    else if (opt_workload == W_BIDS)
        printf("postings: %ld\n", opt_postings);
    else
        printf("bots: %ld\n", opt_bots);
    printf("statements: %s\n", opt_tx ? "one transaction (BEGIN, check, insert, COMMIT)" :
           "autocommit (check, insert)");
    printf("lock TTL: %ld ms\n", opt_ttl_ms);
    printf("number of clients: %d\n", opt_clients);
    printf("number of threads: %d\n", opt_clients);
    printf("duration: %d s\n", opt_seconds);
    printf("number of transactions actually processed: %ld\n", done);
    printf("number of failed transactions: %ld (%.3f%%)\n", failed,
           done + failed ? 100.0 * (double) failed / (double) (done + failed) : 0.0);
    printf("latency average = %.3f ms\n", mean);
    printf("latency stddev = %.3f ms\n", sd);
    printf("latency p50 = %.3f ms\n", PCT(50));
    printf("latency p90 = %.3f ms\n", PCT(90));
    printf("latency p99 = %.3f ms\n", PCT(99));
    printf("initial connection time = %.3f ms\n", ts_diff(&conn_start, &run_start) * 1000);
    printf("tps = %f (without initial connection time)\n", secs > 0 ? (double) done / secs : 0.0);
    if (opt_workload == W_RATE)
    {
        printf("outcome admitted = %ld\n", ok);
        printf("outcome limited = %ld\n", existing);
    }
    else if (opt_workload == W_BIDS)
    {
        printf("outcome created = %ld\n", ok);
        printf("outcome existing = %ld\n", existing);
    }
    else
    {
        printf("outcome executed = %ld\n", ok);
        printf("outcome cooldown = %ld\n", existing);
    }
    printf("outcome busy = %ld\n", busy);
    printf("lock lost at release = %ld\n", lost);
#undef PCT

    for (int i = 0; i < opt_clients; i++)
    {
        if (clients[i].pg)
            PQfinish(clients[i].pg);
        if (clients[i].rd)
            redisFree(clients[i].rd);
        free(clients[i].lat);
    }
    free(clients);
    free(all);
    return 0;
}
