// Genkit JS's durable streaming, as the benchmark's reference: a countdown
// flow served by @genkit-ai/express with FirestoreStreamManager from
// @genkit-ai/firebase, on the Firestore emulator named by
// FIRESTORE_EMULATOR_HOST and GCLOUD_PROJECT.
//
//   node genkit_server.cjs PORT
//
// POST /countdown {"data": {"count": N, "rate": R, "lead": S}} sends N chunks
// shaped like the countdown sample's, R per second (0: no delay), after S
// seconds. GET /__writes?stream=ID returns the Firestore commits this process
// made for a stream: every Commit and BatchWrite RPC of the Firestore client
// is counted, with the documents it wrote, when it succeeds or fails.
//
// CommonJS on purpose: @genkit-ai/express loads genkit's CommonJS build, and a
// GenkitError from the ES module build fails its instanceof check.
const { expressHandler } = require('@genkit-ai/express');
const { FirestoreStreamManager } = require('@genkit-ai/firebase/beta');
const express = require('express');
const { initializeApp } = require('firebase-admin/app');
const { getFirestore } = require('firebase-admin/firestore');
const { genkit, z } = require('genkit');

const port = Number(process.argv[2]);
const collection = process.env.FIRESTORE_STREAMS_COLLECTION ?? 'genkit-streams';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Wall-clock time in microseconds, from a monotonic clock anchored once, so
// chunk timestamps have the precision of Python's datetime.
const originMicros = BigInt(Date.now()) * 1000n - process.hrtime.bigint() / 1000n;
const nowMicros = () => originMicros + process.hrtime.bigint() / 1000n;

function isoTimestamp() {
  const micros = nowMicros();
  const seconds = new Date(Number(micros / 1000n)).toISOString().slice(0, 19);
  const fraction = String(micros % 1000000n).padStart(6, '0');
  return `${seconds}.${fraction}+00:00`;
}

const ai = genkit({});

const countdown = ai.defineFlow(
  {
    name: 'countdown',
    inputSchema: z.object({
      count: z.number().int().positive(),
      rate: z.number().min(0).optional(),
      lead: z.number().min(0).optional(),
    }),
  },
  async ({ count, rate = 0, lead = 0 }, { sendChunk }) => {
    if (lead > 0) await sleep(lead * 1000);
    const start = performance.now();
    for (let index = 0; index < count; index++) {
      if (rate > 0) {
        const wait = start + (index * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const remaining = count - index;
      sendChunk({
        count: remaining,
        message: `T-${remaining}...`,
        timestamp: isoTimestamp(),
      });
    }
    return 'Liftoff!';
  }
);

const app = initializeApp({ projectId: process.env.GCLOUD_PROJECT });
const db = getFirestore(app);
const writes = new Map();

function streamIdOf(write) {
  const name = write.update?.name ?? write.delete ?? write.transform?.document;
  const match = name && name.match(new RegExp(`/documents/${collection}/([^/]+)`));
  return match ? match[1] : null;
}

function tally(request, outcome) {
  const documents = new Map();
  for (const write of request.writes ?? []) {
    const streamId = streamIdOf(write);
    if (streamId !== null) documents.set(streamId, (documents.get(streamId) ?? 0) + 1);
  }
  for (const [streamId, count] of documents) {
    const entry = writes.get(streamId) ?? { commits: 0, documents: 0, failed: 0 };
    if (outcome === 'ok') {
      entry.commits += 1;
      entry.documents += count;
    } else {
      entry.failed += 1;
    }
    writes.set(streamId, entry);
  }
}

// Every write of the Firestore client goes through Firestore#request with the
// method 'commit' (or 'batchWrite' for BulkWriter), one RPC per batch.
const request = db.request.bind(db);
db.request = (methodName, body, ...rest) => {
  const result = request(methodName, body, ...rest);
  if (methodName === 'commit' || methodName === 'batchWrite') {
    result.then(
      () => tally(body, 'ok'),
      () => tally(body, 'failed')
    );
  }
  return result;
};

const streamManager = new FirestoreStreamManager({ firebaseApp: app, db, collection });

const server = express();
server.use(express.json());
server.post('/countdown', expressHandler(countdown, { streamManager }));
server.get('/__writes', (request, response) => {
  response.json(writes.get(String(request.query.stream)) ?? { commits: 0, documents: 0, failed: 0 });
});
server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
