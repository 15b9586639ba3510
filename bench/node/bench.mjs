// The Node side of tinypool-bench: the same workloads, the same command line and the same
// JSON line as the Rust driver (bench/src/main.rs), on Tinypool (worker_threads and
// child_process runtimes) and Piscina.
//
//   node bench.mjs <system> <workload> [n] [repeats]
//
// systems:   tinypool-threads tinypool-process piscina (printed as node-<system>)
// workloads: w1 w2 w3 w4 w5copy w5transfer w6 w7 (w3: the whole process, timed by hyperfine;
//            w6/w7: the idle process that `tinypool-bench measure` looks at), and the async
//            ones: w1-async w2-async (W1/W2 of an async add) and w8 (1,000 10 ms sleeps)
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const ADD = path.join(here, 'add.mjs');
const PAYLOAD = path.join(here, 'payload.mjs');
const ADD_ASYNC = path.join(here, 'add-async.mjs');
const SLEEP = path.join(here, 'sleep.mjs');
const SLEEP_MS = 10;
const PAYLOAD_BYTES = 1 << 20;
const SYSTEMS = ['tinypool-threads', 'tinypool-process', 'piscina'];

const USAGE = `usage: node bench.mjs <system> <workload> [n] [repeats]
systems:   ${SYSTEMS.join(' ')}
workloads: w1 w2 w3 w4 w5copy w5transfer w6 w7 w1-async w2-async w8`;

function usage(message) {
  console.error(`bench.mjs: ${message}\n${USAGE}`);
  process.exit(2);
}

class Failure extends Error {}

function argOr(index, fallback, what) {
  const text = process.argv[index + 2];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    usage(`${what} must be a positive integer, not ${JSON.stringify(text)}`);
  }
  return value;
}

// Fault injection reaches child processes only through `env` (Tinypool's child_process runtime
// gives its children no other environment), so it is passed only when set.
const workerEnv = process.env.TINYPOOL_BENCH_FAULT
  ? { env: { TINYPOOL_BENCH_FAULT: process.env.TINYPOOL_BENCH_FAULT } }
  : {};

// Tasks a worker takes at once: BENCH_CONCURRENCY, default 1 (run.sh also runs W2 with 32),
// and 100 for W8 unless set.
const concurrency = Number(
  process.env.BENCH_CONCURRENCY ?? (process.argv[3] === 'w8' ? 100 : 1),
);

// A pool of `workers` workers of `system` running `filename`, as { run(arg, move), close() }.
async function makePool(system, workers, filename, isolate) {
  if (system === 'piscina') {
    const { Piscina } = await import('piscina');
    if (isolate) {
      // Piscina has no such option: a fresh one-worker pool per task, at most `workers` of
      // them at a time, as for the Rust peers.
      return isolated(() => makePool(system, 1, filename, false), workers);
    }
    const pool = new Piscina({
      filename,
      minThreads: workers,
      maxThreads: workers,
      concurrentTasksPerWorker: concurrency,
      ...workerEnv,
    });
    return {
      run: (arg, move) => pool.run(move ? Piscina.move(arg) : arg),
      close: () => pool.destroy(),
    };
  }
  const { Tinypool } = await import('tinypool');
  const pool = new Tinypool({
    filename,
    runtime: system === 'tinypool-process' ? 'child_process' : 'worker_threads',
    minThreads: workers,
    maxThreads: workers,
    isolateWorkers: isolate,
    concurrentTasksPerWorker: concurrency,
    // Node's default IPC serialization, 'json', turns a Uint8Array into an object of numbered
    // keys; the payload workload needs 'advanced' (V8's structured clone). The add workloads
    // keep the default.
    ...(system === 'tinypool-process' && filename === PAYLOAD ? { serialization: 'advanced' } : {}),
    ...workerEnv,
  });
  return {
    run: (arg, move) => pool.run(move ? Tinypool.move(arg) : arg),
    close: () => pool.destroy(),
  };
}

// Isolation without the option: every task on a freshly built one-worker pool, `lanes` at once.
function isolated(fresh, lanes) {
  return {
    async run(arg, move) {
      const pool = await fresh();
      try {
        return await pool.run(arg, move);
      } finally {
        await pool.close();
      }
    },
    async runAll(n) {
      const lane = async (first) => {
        let sum = 0;
        for (let i = first; i < n; i += lanes) {
          const pool = await fresh();
          try {
            sum += await pool.run({ a: i, b: 1 });
          } finally {
            await pool.close();
          }
        }
        return sum;
      };
      const parts = await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k)));
      return parts.reduce((x, y) => x + y, 0);
    },
    close: async () => {},
  };
}

async function roundTrips(pool, n) {
  for (let i = 0; i < n; i++) {
    const answer = await pool.run({ a: i, b: 1 });
    if (answer !== i + 1) throw new Failure(`add(${i}, 1) returned ${answer}, not ${i + 1}`);
  }
}

async function allAtOnce(pool, n) {
  let sum;
  if (pool.runAll) {
    sum = await pool.runAll(n);
  } else {
    const tasks = new Array(n);
    for (let i = 0; i < n; i++) tasks[i] = pool.run({ a: i, b: 1 });
    sum = (await Promise.all(tasks)).reduce((x, y) => x + y, 0);
  }
  const expected = (n * (n + 1)) / 2;
  if (sum !== expected) throw new Failure(`the ${n} sums add up to ${sum}, not ${expected}`);
}

async function sample(repeats, body, value) {
  const samples = [];
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    await body();
    samples.push(value((performance.now() - start) / 1e3));
  }
  return samples;
}

function median(samples) {
  const sorted = [...samples].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const round = (x) => (Number.isFinite(x) ? Number(x.toPrecision(6)) : null);

function print(system, workload, metric, unit, samples, n, workers, repeats) {
  const line = {
    system: `node-${system}`,
    workload,
    metric,
    unit,
    value: round(median(samples)),
    samples: samples.map(round),
    n,
    workers,
    repeats,
    label: process.env.BENCH_LABEL ?? '',
  };
  console.log(JSON.stringify(line));
}

async function withPool(system, workers, filename, isolate, body) {
  const pool = await makePool(system, workers, filename, isolate);
  try {
    return await body(pool);
  } finally {
    await pool.close();
  }
}

function payloadBuffer() {
  const buf = new Uint8Array(PAYLOAD_BYTES);
  for (let k = 0; k < PAYLOAD_BYTES; k++) buf[k] = k & 0xff;
  return buf;
}

async function payloadTrip(pool, buf, move) {
  const length = await pool.run(buf, move);
  if (length !== PAYLOAD_BYTES) throw new Failure(`payload returned ${length}, not ${PAYLOAD_BYTES}`);
}

async function main() {
  const [system, workload] = process.argv.slice(2);
  if (!SYSTEMS.includes(system?.replace(/^node-/, ''))) usage(`unknown system ${JSON.stringify(system)}`);
  const sys = system.replace(/^node-/, '');
  if (process.argv.length > 6) usage('too many arguments');
  switch (workload) {
    case 'w1':
    case 'w1-async': {
      const n = argOr(2, 20000, 'n');
      const repeats = argOr(3, 5, 'repeats');
      const filename = workload === 'w1' ? ADD : ADD_ASYNC;
      const samples = await withPool(sys, 1, filename, false, async (pool) => {
        await roundTrips(pool, Math.max(Math.floor(n / 10), 1));
        return sample(repeats, () => roundTrips(pool, n), (secs) => (secs * 1e6) / n);
      });
      print(sys, workload, 'latency', 'us/task', samples, n, 1, repeats);
      break;
    }
    case 'w2':
    case 'w2-async': {
      const n = argOr(2, 200000, 'n');
      const repeats = argOr(3, 5, 'repeats');
      const filename = workload === 'w2' ? ADD : ADD_ASYNC;
      const samples = await withPool(sys, 2, filename, false, async (pool) => {
        await allAtOnce(pool, Math.max(Math.floor(n / 10), 1));
        return sample(repeats, () => allAtOnce(pool, n), (secs) => n / secs);
      });
      print(sys, workload, 'throughput', 'tasks/s', samples, n, 2, repeats);
      break;
    }
    case 'w8': {
      // n sleeps of 10 ms at once on 2 workers, each with concurrentTasksPerWorker 100
      // (BENCH_CONCURRENCY if set): ms until all have finished, each answer checked.
      const n = argOr(2, 1000, 'n');
      const repeats = argOr(3, 5, 'repeats');
      const sleeps = async (pool, count) => {
        const answers = await Promise.all(Array.from({ length: count }, () => pool.run(SLEEP_MS)));
        const wrong = answers.find((answer) => answer !== SLEEP_MS);
        if (wrong !== undefined) throw new Failure(`sleep(${SLEEP_MS}) returned ${wrong}`);
      };
      const samples = await withPool(sys, 2, SLEEP, false, async (pool) => {
        await sleeps(pool, Math.max(Math.floor(n / 10), 1));
        return sample(repeats, () => sleeps(pool, n), (secs) => secs * 1e3);
      });
      print(sys, 'w8', 'async_sleeps', 'ms', samples, n, 2, repeats);
      break;
    }
    case 'w3': {
      await withPool(sys, 1, ADD, false, async (pool) => {
        const answer = await pool.run({ a: 1, b: 2 });
        if (answer !== 3) throw new Failure(`add(1, 2) returned ${answer}`);
        console.log(answer);
      });
      break;
    }
    case 'w4': {
      const n = argOr(2, 200, 'n');
      const repeats = argOr(3, 5, 'repeats');
      const samples = await withPool(sys, 2, ADD, true, async (pool) => {
        await allAtOnce(pool, 2);
        return sample(repeats, () => allAtOnce(pool, n), (secs) => n / secs);
      });
      print(sys, 'w4', 'isolation', 'tasks/s', samples, n, 2, repeats);
      break;
    }
    case 'w5copy':
    case 'w5transfer': {
      // w5copy: each call structured-clones the buffer (worker_threads) or serializes it
      // over IPC (child_process). w5transfer (worker_threads only): each call moves a buffer
      // of its own (Tinypool.move / Piscina.move); the n buffers are made before the timed
      // section.
      const n = argOr(2, 200, 'n');
      const repeats = argOr(3, 5, 'repeats');
      const move = workload === 'w5transfer';
      if (move && sys === 'tinypool-process') {
        usage('w5transfer is for threads systems: tinypool-process always copies (run w5copy)');
      }
      const buf = payloadBuffer();
      const samples = await withPool(sys, 1, PAYLOAD, false, async (pool) => {
        for (let i = 0; i < Math.max(Math.floor(n / 10), 1); i++) {
          await payloadTrip(pool, move ? buf.slice() : buf, move);
        }
        const samples = [];
        for (let r = 0; r < repeats; r++) {
          const moved = move ? Array.from({ length: n }, () => buf.slice()) : [];
          const start = performance.now();
          for (let i = 0; i < n; i++) await payloadTrip(pool, move ? moved[i] : buf, move);
          const secs = (performance.now() - start) / 1e3;
          samples.push((n * (PAYLOAD_BYTES / (1 << 20))) / secs);
        }
        return samples;
      });
      print(sys, workload, 'payload', 'MiB/s', samples, n, 1, repeats);
      break;
    }
    case 'w6':
    case 'w7': {
      if (process.argv.length > 5) usage(`${workload} takes no repeats: \`measure\` repeats it`);
      const n = argOr(2, workload === 'w6' ? 100 : 10, 'n');
      const pool = await makePool(sys, 2, ADD, false);
      await allAtOnce(pool, n);
      process.stdout.write('READY\n');
      await new Promise((resolve) => {
        process.stdin.on('end', resolve);
        process.stdin.resume();
      });
      await pool.close();
      break;
    }
    default:
      usage(`unknown workload ${JSON.stringify(workload)}`);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`bench.mjs: ${error instanceof Failure ? error.message : error?.stack ?? error}`);
    process.exit(1);
  },
);
