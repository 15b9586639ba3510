// The W8 task: an async function that awaits a setTimeout of `ms` milliseconds and returns
// `ms` (plus one when TINYPOOL_BENCH_FAULT is set).
const fault = process.env.TINYPOOL_BENCH_FAULT ? 1 : 0;

export default async function sleep(ms) {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ms + fault;
}
