/// <reference lib="dom" />
// The playground and the dashboard (issue 18), in a real browser: Debian's Chromium,
// headless, driven by playwright-core. Screenshots go to test/artifacts/.
import { mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { docker, startRunner, type Runner } from './helper.ts';

t.setTimeout(600_000);

const ARTIFACTS = new URL('artifacts/', import.meta.url);
mkdirSync(ARTIFACTS, { recursive: true });
const screenshot = (page: Page, name: string) => page.screenshot({ path: new URL(`${name}.png`, ARTIFACTS).pathname, fullPage: true });

let browser: Browser;
t.before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
t.teardown(() => browser?.close());

const lights = (page: Page) => page.locator('#traffic-lights li');
// Presses [test] and waits for the next light: its colour.
async function test(page: Page): Promise<string> {
  const before = await lights(page).count();
  await page.click('#test');
  await page.waitForFunction((n) => document.querySelectorAll('#traffic-lights li').length > n, before, { timeout: 60_000 });
  return (await lights(page).nth(before).getAttribute('data-colour'))!;
}
// Replaces the text of the editor's current file, as a user would: select all, type.
async function typeInEditor(page: Page, text: string): Promise<void> {
  await page.click('#editor .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

async function openPlayground(runner: Runner): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(`${runner.url}/playground`);
  await page.waitForSelector('#start-point option:nth-child(2)', { state: 'attached' });
  await page.selectOption('#start-point', { label: 'Python, pytest' });
  await page.waitForSelector('#tabs [data-file="hiker.py"]');
  return page;
}

t.test('the playground: red, green, amber, timed_out, a created file, and a kata removed behind its back', async (t) => {
  const runner = await startRunner(t);
  const page = await openPlayground(runner);
  t.match(await page.textContent('#kata'), /^kata [0-9A-F]{10} · [a-z]+$/, 'the kata and the avatar are shown');
  t.equal(await test(page), 'red', 'as it starts');
  await page.click('#tabs [data-file="hiker.py"]');
  await typeInEditor(page, 'def answer():\n    return 6 * 7\n');
  t.equal(await test(page), 'green', 'the answer edited to 42');
  await screenshot(page, 'playground');
  await typeInEditor(page, 'def answer(:\n');
  // Ctrl-Enter runs the tests too.
  const before = await lights(page).count();
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#traffic-lights li').length > n, before);
  t.equal(await lights(page).nth(before).getAttribute('data-colour'), 'amber', 'a syntax error, by the keyboard');
  t.match(await lights(page).nth(before).getAttribute('title'), /^amber, \d+ ms/, 'the duration on hover');

  await page.click('#tabs [data-file="cyber-dojo.sh"]');
  await typeInEditor(page, 'echo made > report.txt\nsleep 30\n');
  await page.fill('#max-seconds', '2');
  t.equal(await test(page), 'timed_out');
  t.equal(await page.locator('#tabs [data-file="report.txt"]').count(), 1, 'report.txt, made by the run, has a tab');

  await typeInEditor(page, 'python3 -m pytest test_hiker.py\n');
  await page.fill('#max-seconds', '10');
  const kataId = (await page.textContent('#kata'))!.split(' ')[1]!;
  await docker.getContainer(`${runner.config.runnerName}-kata-${kataId}`).remove({ force: true });
  t.equal(await test(page), 'amber', 'the kata removed behind its back: a light all the same (hiker.py still has its syntax error)');
  t.equal(await page.textContent('#error'), '', 'no error shown');
  t.match(await lights(page).last().getAttribute('title'), /resurrected/);
  await page.close();
});

t.test('the dashboard lists a kata with its avatar and its last light within 5 s', async (t) => {
  const runner = await startRunner(t);
  const playground = await openPlayground(runner);
  const [, kataId, , avatar] = (await playground.textContent('#kata'))!.split(' ');
  t.equal(await test(playground), 'red');
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  await page.goto(`${runner.url}/dashboard`);
  const light = page.locator(`#katas tr[data-kata="${kataId}"] [data-avatar="${avatar}"] .light`);
  await light.waitFor({ timeout: 5000 });
  t.equal(await light.getAttribute('data-colour'), 'red');
  // And it keeps itself up to date: the next light shows in 5 s at most.
  await playground.click('#tabs [data-file="hiker.py"]');
  await typeInEditor(playground, 'def answer():\n    return 6 * 7\n');
  t.equal(await test(playground), 'green');
  await page.waitForFunction(({ kataId, avatar }) => document.querySelector(`#katas tr[data-kata="${kataId}"] [data-avatar="${avatar}"] .light`)?.getAttribute('data-colour') === 'green', { kataId, avatar }, { timeout: 5000 });
  t.pass('the green light arrived by itself');
  await screenshot(page, 'dashboard');
  await page.click(`#katas tr[data-kata="${kataId}"] a`);
  await page.waitForSelector('#detail h2');
  t.match(await page.textContent('#detail'), new RegExp(`${avatar}.*green.*red`, 's'), "the kata's avatar's last runs, newest first");
  await playground.close();
  await page.close();
});

t.test('with a token, the pages ask for it once', async (t) => {
  const token = 'a-token-for-the-pages-test-only';
  const runner = await startRunner(t, { RUNNER_TOKEN: token });
  const page = await browser.newPage();
  let asked = 0;
  page.on('dialog', (dialog) => {
    asked++;
    void dialog.accept(token);
  });
  await page.goto(`${runner.url}/playground`);
  await page.waitForSelector('#start-point option:nth-child(2)', { state: 'attached' });
  await page.goto(`${runner.url}/dashboard`);
  await page.waitForSelector('#updated:not(:empty)');
  t.equal(asked, 1, 'asked once, for both pages');
  await page.close();
});
