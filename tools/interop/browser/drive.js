#!/usr/bin/env node
// Drives headless Chromium (through playwright-core) to the ringws interop
// page and prints the page's outcome as one JSON line on stdout.
//
//   NODE_PATH=tools/interop/node_modules node tools/interop/browser/drive.js http://127.0.0.1:PORT/
//
// Chromium comes from $RINGWS_CHROMIUM (default /usr/bin/chromium); a fresh
// user-data directory is created and removed for each run. Exit status 0
// when the page published an outcome (the caller judges it), 1 otherwise;
// either way the JSON line says what happened.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const TIMEOUT_MS = Number(process.env.RINGWS_BROWSER_TIMEOUT_MS || 60000);

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function report(result, status) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = status;
}

async function main() {
  const url = process.argv[2];
  if (!url) {
    report({ error: 'usage: drive.js <page url>' }, 1);
    return;
  }
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (error) {
    report({ error: `cannot load playwright-core (run npm ci in tools/interop): ${error.message}` }, 1);
    return;
  }
  const executablePath = process.env.RINGWS_CHROMIUM || '/usr/bin/chromium';
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringws-chromium-'));
  const consoleLines = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: TIMEOUT_MS,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
    await page.goto(url, { timeout: TIMEOUT_MS });
    await page.waitForFunction(() => window.ringwsOutcome !== null, null, {
      timeout: TIMEOUT_MS,
      polling: 50,
    });
    const outcome = await page.evaluate(() => window.ringwsOutcome);
    report({ browser: context.browser() ? context.browser().version() : null, outcome, console: consoleLines }, 0);
  } catch (error) {
    report({ error: String(error && error.stack ? error.stack : error), console: consoleLines }, 1);
  } finally {
    if (context) {
      await context.close().catch(() => {});
    }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main();
