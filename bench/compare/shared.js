// What run.js and worker.js share: the layout of the control words (an
// Int32Array on a SharedArrayBuffer) and the latency histogram.
//   ctl[PHASE]       CONNECTING, WARMUP, MEASURING, STOPPED
//   ctl[WAITING]     1 while the publisher waits for a subscriber thread's
//                    progress: the next thread to store a new low-water
//                    mark clears it and wakes the publisher with a message
//                    on its MessagePort (Atomics.waitAsync does not wake
//                    Node's event loop by itself)
//   ctl[SLOTS + w]   the highest event number that every subscriber of
//                    thread w has received
export const PHASE = 0, WAITING = 1, SLOTS = 8;
export const CONNECTING = 0, WARMUP = 1, MEASURING = 2, STOPPED = 3;
/// Latency histogram: 10 µs buckets up to 10 s.
export const BUCKETS = 1_000_001;
