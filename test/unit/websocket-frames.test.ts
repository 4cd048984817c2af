import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameBoundary } from '../../src/proxy/upgrade.ts';

/** A WebSocket frame as an app (or, masked, a client) writes it: every length encoding of RFC 6455 §5.2. */
function frame(payload: number, masked = false): Buffer {
  const ext =
    payload < 126
      ? []
      : payload < 65536
        ? [payload >> 8, payload & 0xff]
        : [0, 0, 0, 0, 0, payload >> 16, (payload >> 8) & 0xff, payload & 0xff];
  const len = payload < 126 ? payload : payload < 65536 ? 126 : 127;
  return Buffer.concat([
    Buffer.from([0x82, (masked ? 0x80 : 0) | len, ...ext]),
    masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0),
    Buffer.alloc(payload, 0x61),
  ]);
}

test('the frame boundaries of a WebSocket stream are found however it is cut into chunks', () => {
  const frames = [frame(0), frame(5), frame(125), frame(126), frame(300, true), frame(70_000), frame(3, true)];
  const stream = Buffer.concat(frames);
  const boundaries: number[] = [];
  let at = 0;
  for (const f of frames) boundaries.push((at += f.length));
  for (const size of [1, 2, 3, 7, 13, 14, 15, 64, 1000, stream.length]) {
    // Counting only: at a boundary exactly where each chunk ends on one.
    const counted = new FrameBoundary();
    for (let i = 0; i < stream.length; i += size) {
      counted.feed(stream.subarray(i, i + size));
      const end = Math.min(i + size, stream.length);
      assert.equal(counted.atBoundary, boundaries.includes(end), `chunks of ${size}, after ${end} bytes`);
    }
    // Stopping: each stop is the next boundary, from wherever the chunks begin.
    const stopping = new FrameBoundary();
    const stops: number[] = [];
    for (let i = 0; i < stream.length; ) {
      const chunk = stream.subarray(i, i + size);
      const n = stopping.feed(chunk, true);
      i += n;
      if (stopping.atBoundary) stops.push(i);
    }
    assert.deepEqual(
      stops.filter((s, k) => stops.indexOf(s) === k),
      boundaries,
      `chunks of ${size}: a stop at every boundary`,
    );
  }
});

test('a frame announced larger than what has come is pending by its payload’s size', () => {
  const f = new FrameBoundary();
  f.feed(Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 0x61]));
  assert.equal(f.atBoundary, false);
  assert.equal(f.pending, 0x200000 - 1);
});
