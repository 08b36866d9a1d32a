// Genkit's own durable streaming server, as a reference for our server: the
// countdown flow behind @genkit-ai/express with Genkit's Firestore stream
// manager on the Firestore emulator, and a failing flow with the in-memory
// manager. Usage: node genkit_server.cjs PORT (FIRESTORE_EMULATOR_HOST and
// GCLOUD_PROJECT name the emulator; COUNTDOWN_TICK_SECONDS sets the tick).
//
// CommonJS on purpose: @genkit-ai/express loads genkit's CommonJS build, and a
// GenkitError from the ES module build fails its instanceof check, which
// turns every flow error into INTERNAL.
const { expressHandler } = require('@genkit-ai/express');
const { FirestoreStreamManager } = require('@genkit-ai/firebase/beta');
const express = require('express');
const { initializeApp } = require('firebase-admin/app');
const { getFirestore } = require('firebase-admin/firestore');
const { genkit, GenkitError, z } = require('genkit');
const { InMemoryStreamManager } = require('genkit/beta');

const port = Number(process.argv[2]);
const tickMs = Number(process.env.COUNTDOWN_TICK_SECONDS ?? '1') * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const ai = genkit({});

const countdown = ai.defineFlow(
  { name: 'countdown', inputSchema: z.number().optional() },
  async (input, { sendChunk }) => {
    const count = input && input > 0 ? input : 5;
    for (let remaining = count; remaining > 0; remaining--) {
      await sleep(tickMs);
      sendChunk({
        count: remaining,
        message: `T-${remaining}...`,
        timestamp: new Date().toISOString(),
      });
    }
    return 'Liftoff!';
  }
);

const fail = ai.defineFlow(
  { name: 'fail', inputSchema: z.any() },
  async (input, { sendChunk }) => {
    for (let index = 0; index < (input?.after ?? 0); index++) {
      sendChunk(index);
      await sleep((input?.tick ?? 0) * 1000);
    }
    throw new GenkitError({
      status: input?.status ?? 'ABORTED',
      message: input?.message ?? 'failed on purpose',
    });
  }
);

const app = initializeApp({ projectId: process.env.GCLOUD_PROJECT });
const firestore = new FirestoreStreamManager({
  firebaseApp: app,
  db: getFirestore(app),
  collection: process.env.FIRESTORE_STREAMS_COLLECTION ?? 'genkit-streams',
});

const server = express();
server.use(express.json());
server.post('/countdown', expressHandler(countdown, { streamManager: firestore }));
server.post(
  '/fail',
  expressHandler(fail, { streamManager: new InMemoryStreamManager() })
);
server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
