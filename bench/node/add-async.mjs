// The w1-async and w2-async task: add({ a, b }) as an async function that returns at once, to
// set the per-task cost of an async export beside add.mjs's sync one. Wrong by one when
// TINYPOOL_BENCH_FAULT is set.
const fault = process.env.TINYPOOL_BENCH_FAULT ? 1 : 0;

export default async function add({ a, b }) {
  return a + b + fault;
}
