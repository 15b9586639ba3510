// The W5 task: the length of the buffer it was given (a Uint8Array, copied or moved).
export default function payload(buf) {
  return buf.byteLength;
}
