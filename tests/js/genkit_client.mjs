// Genkit's JS client against a durable flow: start it, drop the connection
// after some chunks, then resume with the stream id. Prints one JSON object
// with what the client yielded. Usage:
//   node genkit_client.mjs URL INPUT_JSON DROP_AFTER
import { streamFlow } from 'genkit/beta/client';

const [url, inputJson, dropAfterText] = process.argv.slice(2);
const input = JSON.parse(inputJson);
const dropAfter = Number(dropAfterText);

// Genkit's client rejects internal promises that nobody awaits when a call
// fails or is aborted; every outcome is read from `output` below instead.
process.on('unhandledRejection', () => {});

async function collect(call, limit = Infinity) {
  const chunks = [];
  const settled = call.output.then(
    (output) => ({ output, error: null }),
    (caught) => ({ output: null, error: String(caught?.message ?? caught) })
  );
  try {
    for await (const chunk of call.stream) {
      chunks.push(chunk);
      if (chunks.length >= limit) return { chunks, output: null, error: null };
    }
  } catch {
    // The same error rejects `output`.
  }
  return { chunks, ...(await settled) };
}

const controller = new AbortController();
const first = streamFlow({ url, input, abortSignal: controller.signal });
const streamId = await first.streamId;
const before = await collect(first, dropAfter);
controller.abort();

const resumed = streamFlow({ url, streamId });
const after = await collect(resumed);

console.log(
  JSON.stringify({
    streamIdIsSet: typeof streamId === 'string' && streamId.length > 0,
    resumedStreamId: (await resumed.streamId) === streamId,
    before: before.chunks,
    beforeError: before.error,
    after: after.chunks,
    output: after.output,
    error: after.error,
  })
);
