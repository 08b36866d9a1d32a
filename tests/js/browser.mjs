// Drives Debian's Chromium with playwright-core for the Python tests. Reads one
// JSON command per line on stdin and prints one JSON reply per line:
//   {"goto": URL}                      open a page
//   {"fill": SELECTOR, "value": TEXT}  type into a field
//   {"click": SELECTOR}
//   {"eval": EXPRESSION}               reply {"value": <result>}
//   {"wait": EXPRESSION, "timeout": MS}  until the expression is truthy
//   {"screenshot": PATH}
// A failed command replies {"error": MESSAGE}. Usage:
//   node browser.mjs CHROMIUM_PATH USER_DATA_DIR
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const [executablePath, userDataDir] = process.argv.slice(2);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
const consoleLines = [];
page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));

async function run(command) {
  if ('goto' in command) await page.goto(command.goto);
  else if ('fill' in command) await page.fill(command.fill, command.value);
  else if ('click' in command) await page.click(command.click);
  else if ('eval' in command) return { value: await page.evaluate(command.eval) };
  else if ('wait' in command) {
    await page.waitForFunction(command.wait, null, { timeout: command.timeout ?? 30000 });
  } else if ('screenshot' in command) await page.screenshot({ path: command.screenshot });
  else if ('console' in command) return { value: consoleLines };
  else throw new Error(`unknown command: ${JSON.stringify(command)}`);
  return {};
}

console.log(JSON.stringify({ ready: true }));
for await (const line of readline.createInterface({ input: process.stdin })) {
  let reply;
  try {
    reply = await run(JSON.parse(line));
  } catch (error) {
    reply = { error: String(error.message ?? error) };
  }
  console.log(JSON.stringify(reply));
}
await context.close();
