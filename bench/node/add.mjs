// The W1–W4, W6 and W7 task: add({ a, b }). Wrong by one when TINYPOOL_BENCH_FAULT is set,
// so that bench.mjs's result checks can be seen to fail.
const fault = process.env.TINYPOOL_BENCH_FAULT ? 1 : 0;

export default function add({ a, b }) {
  return a + b + fault;
}
