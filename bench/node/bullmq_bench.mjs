// BullMQ (node) side of `python -m bench`: the same line protocol as bench/child.py.
//   node bullmq_bench.mjs ROLE PARAMS_JSON
// Roles: fill, seq, bulk, memory, latency, worker. Defaults everywhere: drainDelay 5 s,
// lockDuration 30 s, stalledInterval 30 s, completed jobs kept; bulk = Queue.addBulk.
import { Queue, Worker } from "bullmq";
import { createInterface } from "node:readline";

const [role, raw] = process.argv.slice(2);
const params = JSON.parse(raw);
const url = new URL(params.url);
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number((url.pathname || "/0").slice(1) || 0),
  maxRetriesPerRequest: null,
};
const QUEUE = "bench";
const PAD = "x".repeat(200);

let goResolve, stopResolve;
const go = new Promise((r) => (goResolve = r));
const stop = new Promise((r) => (stopResolve = r));
let goTime = 0;
let goCpu = 0;
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
createInterface({ input: process.stdin }).on("line", (line) => {
  const word = line.trim();
  if (word === "GO") {
    goTime = Date.now() / 1000;
    goCpu = cpu();
    goResolve();
  } else if (word === "STOP") stopResolve();
});
const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const finish = (result) => {
  process.stdout.write(JSON.stringify({ result }) + "\n", () => process.exit(0));
};

async function fill(queue, n, data) {
  for (let i = 0; i < n; i += 1000) {
    const jobs = [];
    for (let j = 0; j < Math.min(1000, n - i); j++) jobs.push({ name: "noop", data: data() });
    await queue.addBulk(jobs);
  }
}

async function produce() {
  const queue = new Queue(QUEUE, { connection });
  await queue.waitUntilReady();
  const n = params.n;
  if (role === "fill") {
    await fill(queue, n, () => ({ t: 0 }));
    await queue.close();
    finish({ n });
    return;
  }
  for (let i = 0; i < 20; i++) await queue.add("noop", { t: 0 });
  if (role === "bulk") await queue.addBulk(Array.from({ length: 20 }, () => ({ name: "noop", data: { t: 0 } })));
  send({ ready: true });
  await go;
  const cpu0 = cpu();
  const t0 = performance.now();
  let lag = 0;
  if (role === "seq") {
    for (let i = 0; i < n; i++) await queue.add("noop", { t: Date.now() / 1000 });
  } else if (role === "bulk") {
    const batch = params.batch || 1000;
    for (let i = 0; i < n; i += batch) {
      const jobs = [];
      for (let j = 0; j < Math.min(batch, n - i); j++) jobs.push({ name: "noop", data: { t: 0 } });
      await queue.addBulk(jobs);
    }
  } else if (role === "memory") {
    await fill(queue, n, () => ({ t: Date.now() / 1000, pad: PAD }));
  } else if (role === "latency") {
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const due = start + (i * 1000) / params.rate;
      const now = performance.now();
      if (due > now) await new Promise((r) => setTimeout(r, due - now));
      else lag = Math.max(lag, (now - due) / 1000);
      // performance.timeOrigin + now: sub-millisecond wall time, like Python's time.time()
      await queue.add("noop", { t: (performance.timeOrigin + performance.now()) / 1000 });
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  const used = cpu() - cpu0;
  await queue.close();
  finish({ n, elapsed, cpu: used, lag });
}

async function work() {
  let count = 0;
  let last = 0;
  const latencies = params.latency ? [] : null;
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const now = (performance.timeOrigin + performance.now()) / 1000;
      count++;
      last = now;
      if (latencies && job.data.t) latencies.push(now - job.data.t);
    },
    { connection, concurrency: params.concurrency, autorun: false },
  );
  await worker.waitUntilReady();
  send({ ready: true });
  await go;
  worker.run();
  let sent = -1;
  const timer = setInterval(() => {
    if (count !== sent) {
      send({ count });
      sent = count;
    }
  }, 20);
  await stop;
  clearInterval(timer);
  finish({ count, go: goTime, last, cpu: cpu() - goCpu, latencies });
}

if (role === "worker") await work();
else await produce();
