// The one way this project starts a browser: Debian's headless Chromium
// (installed by scripts/setup.sh) through playwright-core from .local/npm,
// with the flags the project's safety rules ask for, a fresh profile
// directory, and no host name resolving but 127.0.0.1.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  // Belt and braces: no host name resolves, only 127.0.0.1 is reached.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

function loadPlaywright() {
  const require = createRequire(path.join(REPO_ROOT, '.local', 'npm', 'package.json'));
  try {
    return require('playwright-core');
  } catch {
    console.error('playwright-core not found in .local/npm: run scripts/setup.sh');
    process.exit(2);
  }
}

// Starts Chromium with a new profile directory (prefix names it in /tmp);
// exits 2 when Chromium or playwright-core is not installed. Returns the
// context and a function that closes it and removes the profile.
export async function launch(prefix, options = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`${CHROMIUM} not found: run scripts/setup.sh`);
    process.exit(2);
  }
  const { chromium } = loadPlaywright();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const remove = () => fs.promises.rm(userDataDir, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30000,
      args: ARGS,
      ...options,
    });
  } catch (e) {
    await remove();
    throw e;
  }
  const close = async () => {
    await context.close().catch(() => {});
    await remove();
  };
  return { context, close };
}
