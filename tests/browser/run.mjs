// Drives the browser client in Debian's headless Chromium through playwright-core, by the page's accessible
// names, as a person (or a screen reader) finds them. One scenario per run:
//   node run.mjs <scenario> <base-url>
// Prints what it checked; exits 0 when every check held, 1 with the reason otherwise. BrowserTests runs it.

import { chromium } from 'playwright-core';

const [scenario, base] = process.argv.slice(2);
const TIMEOUT = 20_000;
const suffix = Math.random().toString(36).slice(2, 8);
const say = (line) => console.log(line);

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

/** A person with a browser of their own (own IndexedDB), signed up through the page. */
async function person(name, { viewport = { width: 1100, height: 700 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (error) => say(`page error (${name}): ${error.message}`));
  await page.goto(base);
  const user = `${name}${suffix}`;
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Register' }).click();
  await page.getByRole('list', { name: 'Conversations' }).waitFor();
  await page.getByText('Online', { exact: true }).waitFor();
  return { user, page, context };
}

async function startChat(who, withUser) {
  await who.page.getByRole('button', { name: 'New chat' }).click();
  await who.page.getByLabel('Chat with').fill(withUser);
  await who.page.getByRole('button', { name: 'Start' }).click();
}

async function send(who, text) {
  await who.page.getByLabel('Message', { exact: true }).fill(text);
  await who.page.getByRole('button', { name: 'Send' }).click();
}

const messages = (who) => who.page.getByRole('list', { name: 'Messages' });
const message = (who, pattern) => messages(who).getByRole('listitem', { name: pattern });

async function openFromList(who, name) {
  await who.page.getByRole('list', { name: 'Conversations' }).getByRole('listitem', { name: new RegExp(`^${name}`) }).click();
}

const scenarios = {
  // Two people: register, chat, ticks advance sent → delivered → read, typing shows, a reply arrives.
  async chat() {
    const alice = await person('alice');
    const bob = await person('bob');
    await startChat(alice, bob.user);
    await send(alice, 'hello bob');
    await message(alice, /hello bob.*(delivered|read)$/).waitFor();
    check(true, 'alice sees ✓✓ (delivered) once bob is online');
    await bob.page.getByRole('list', { name: 'Conversations' }).getByRole('listitem', { name: new RegExp(`^${alice.user}, 1 unread`) }).waitFor();
    check(true, 'bob sees the conversation with one unread message');
    await openFromList(bob, alice.user);
    await message(bob, /hello bob/).waitFor();
    await message(alice, /hello bob.*read$/).waitFor();
    check(true, 'alice sees the read tick once bob opened the chat');
    await bob.page.getByLabel('Message', { exact: true }).pressSequentially('typing somethi', { delay: 20 });
    await alice.page.getByText('typing…').waitFor();
    check(true, "alice sees bob's typing");
    await bob.page.getByLabel('Message', { exact: true }).fill('hi alice');
    await bob.page.getByRole('button', { name: 'Send' }).click();
    await message(alice, /hi alice/).waitFor();
    check(true, "alice gets bob's reply");
    await alice.page.getByText('online', { exact: true }).waitFor();
    check(true, 'alice sees bob online');

    // Reply, edit, delete (encrypted like the rest), as the other side sees them.
    await message(alice, /hi alice/).getByRole('button', { name: 'Reply' }).click();
    await send(alice, 'answering you');
    await message(bob, /answering you/).waitFor();
    check(await message(bob, /answering you/).locator('.quote').textContent() === `${bob.user}: hi alice`, 'bob sees the reply quoting his message');
    await message(alice, /^You: hello bob/).getByRole('button', { name: 'Edit' }).click();
    await send(alice, 'hello bob, edited');
    await message(bob, /hello bob, edited/).waitFor();
    check(await message(bob, /hello bob, edited/).getByText(/edited \d/).count() === 1, 'bob sees the edit, marked edited');
    await message(alice, /^You: answering you/).getByRole('button', { name: 'Delete' }).click();
    await message(bob, /This message was deleted/).waitFor();
    check(true, 'bob sees the message deleted');
  },

  // With the C# SDK (its user named in SDK_USER, run by the test): encrypted both ways, each side decrypts.
  async interop() {
    const browserUser = await person('web');
    say(`BROWSER_USER ${browserUser.user}`);
    await startChat(browserUser, process.env.SDK_USER);
    await send(browserUser, 'from the browser, sealed');
    await message(browserUser, /from the browser, sealed.*(sent|delivered|read)$/).waitFor();
    check(true, 'the browser sent an encrypted message to the SDK user');
    await message(browserUser, /from the sdk, sealed/).waitFor({ timeout: 30_000 });
    check(await messages(browserUser).getByText('Could not be decrypted').count() === 0, "the browser decrypted the SDK's answer");
    await browserUser.page.reload();
    await openFromList(browserUser, process.env.SDK_USER);
    await message(browserUser, /from the sdk, sealed/).waitFor();
    check(true, 'after a reload the history is readable from the kept text');
    const rotated = await browserUser.page.evaluate(async () => {
      const e2ee = await import('./e2ee.js');
      return [await e2ee.rotateSignedPrekey(Date.now()), await e2ee.rotateSignedPrekey(Date.now() + 8 * 86_400_000)];
    });
    check(rotated[0] === null && rotated[1]?.signed_prekey?.id === 2, 'a week-old signed prekey is replaced by the next id, a fresh one is kept');
    await browserUser.page.getByRole('button', { name: 'Safety number' }).click();
    const shown = await browserUser.page.getByRole('status').filter({ hasText: 'Safety number' }).textContent();
    const number = /(\d{5}( \d{5}){11})/.exec(shown)?.[1];
    check(Boolean(number), 'the page shows a 60-digit safety number');
    say(`SAFETY ${number}`);
  },

  // The service worker shows a Web Push as a notification naming the sender, and nothing of the text.
  async push() {
    const who = await person('pia');
    await who.context.grantPermissions(['notifications'], { origin: new URL(base).origin });
    const scope = await who.page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
    check(scope === new URL(base).origin + '/', 'the service worker is active for the whole site');
    const cdp = await who.context.newCDPSession(who.page);
    const registered = new Promise((resolve) => cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      const found = e.registrations.find((r) => r.scopeURL === scope && !r.isDeleted);
      if (found) resolve(found.registrationId);
    }));
    await cdp.send('ServiceWorker.enable');
    const registrationId = await registered;
    let shown = [];
    // Delivered again until it shows (a worker still starting may miss the first; one tag per conversation, so
    // repeats replace each other).
    for (let attempt = 0; attempt < 10 && shown.length === 0; attempt++) {
      await cdp.send('ServiceWorker.deliverPushMessage', { origin: new URL(base).origin, registrationId, data: JSON.stringify({ conv: 'dm:a:b', seq: 7, from: 'bob' }) });
      for (let i = 0; i < 10 && shown.length === 0; i++) {
        shown = await who.page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => `${n.tag}|${n.body}`));
        if (!shown.length) await who.page.waitForTimeout(100);
      }
    }
    check(shown.length === 1 && shown[0] === 'dm:a:b|New message from bob', `the push is a notification per conversation naming the sender (${shown.join(', ')})`);
    const vapid = await who.page.evaluate(async () => (await (await fetch('/v1/push/vapid')).json()).publicKey);
    check(typeof vapid === 'string' && vapid.length > 80, "the server's VAPID key is there for the subscription");
  },

  // Markup typed by a user, in a message and in a group's name, is shown as text and never runs.
  async xss() {
    const alice = await person('mallory');
    const bob = await person('victim');
    const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
    await startChat(alice, bob.user);
    await send(alice, payload);
    await alice.page.getByRole('button', { name: 'New group' }).click();
    await alice.page.getByLabel('Group name').fill('<b onmouseover="window.__xss=3">bold</b>');
    await alice.page.getByLabel('Members').fill(bob.user);
    await alice.page.getByRole('button', { name: 'Create' }).click();
    await openFromList(bob, alice.user);
    await message(bob, /onerror/).waitFor();
    const shown = await messages(bob).getByRole('listitem').first().textContent();
    check(shown.includes('<img src=x onerror="window.__xss=1">'), 'the message is shown as the text that was typed');
    check(await messages(bob).locator('img, script').count() === 0, 'no element was made from it');
    if (process.env.SHOT) await bob.page.screenshot({ path: process.env.SHOT });
    await bob.page.getByRole('list', { name: 'Conversations' }).getByText('<b onmouseover="window.__xss=3">bold</b>', { exact: true }).waitFor();
    check(true, "the group's name is shown as text");
    await bob.page.getByRole('list', { name: 'Conversations' }).getByText('<b onmouseover="window.__xss=3">bold</b>', { exact: true }).hover();
    check(await bob.page.evaluate(() => window.__xss) === undefined, 'nothing ran');
  },

  // A group of three: each member reads what the others write.
  async group() {
    const alice = await person('ann');
    const bob = await person('ben');
    const carol = await person('cat');
    await alice.page.getByRole('button', { name: 'New group' }).click();
    await alice.page.getByLabel('Group name').fill('climbers');
    await alice.page.getByLabel('Members').fill(`${bob.user}, ${carol.user}`);
    await alice.page.getByRole('button', { name: 'Create' }).click();
    await send(alice, 'who is in for saturday');
    for (const member of [bob, carol]) {
      await openFromList(member, 'climbers');
      await message(member, /who is in for saturday/).waitFor();
    }
    check(true, 'both members read the first message');
    await send(bob, 'me');
    await send(carol, 'me too');
    await message(alice, /^ben.*: me,/).waitFor();
    await message(alice, /me too/).waitFor();
    check(true, "alice reads both answers");
    await message(alice, /who is in for saturday.*read$/).waitFor();
    check(true, "alice's tick says read once both read it");
  },

  // History: the newest 30 first, older ones on request, in order.
  async history() {
    const alice = await person('hal');
    const bob = await person('hank');
    await startChat(alice, bob.user);
    for (let i = 1; i <= 40; i++) await send(alice, `line ${i}`), await message(alice, new RegExp(`line ${i}, .*(sent|delivered|read)$`)).waitFor();
    await openFromList(bob, alice.user);
    await message(bob, /line 40/).waitFor();
    check(await message(bob, /line 5,/).count() === 0, 'the first page holds the newest messages only');
    await bob.page.getByRole('button', { name: 'Older messages' }).click();
    await message(bob, /line 1,/).waitFor();
    const texts = await messages(bob).locator('li .text').allTextContents();
    const order = texts.map((t) => Number(/line (\d+)/.exec(t)?.[1])).filter(Boolean);
    check(order.length === 40 && order.every((n, i) => n === i + 1), 'all 40 are shown, in order');
  },

  // The server goes away and comes back: the page says so, reconnects by itself, and sending works again.
  async reconnect() {
    const alice = await person('rita');
    const bob = await person('rob');
    await startChat(alice, bob.user);
    await send(alice, 'before the restart');
    await message(alice, /before the restart/).waitFor();
    say('READY'); // the test restarts the server now
    await alice.page.getByText('Reconnecting…').waitFor({ timeout: 60_000 });
    check(true, 'the page says it is reconnecting');
    await alice.page.getByText('Online', { exact: true }).waitFor({ timeout: 60_000 });
    check(true, 'it is back by itself');
    await send(alice, 'after the restart');
    await message(alice, /after the restart.*(sent|delivered|read)$/).waitFor();
    await openFromList(bob, alice.user);
    await message(bob, /after the restart/).waitFor();
    check(true, 'a message after the restart is stored and reaches bob');
  },
};

// The main screens for docs/screenshots (not a test): desktop and phone width, light and dark.
scenarios.screenshots = async () => {
  const dir = process.env.SHOTS_DIR ?? '.';
  const signin = await browser.newContext({ viewport: { width: 1100, height: 700 }, colorScheme: 'light' });
  const first = await signin.newPage();
  await first.goto(base);
  await first.getByLabel('Username').fill('alice');
  await first.screenshot({ path: `${dir}/signin-light.png` });
  const alice = await person('alice');
  const bob = await person('bob');
  const carol = await person('carol');
  await alice.page.getByRole('button', { name: 'New group' }).click();
  await alice.page.getByLabel('Group name').fill('Saturday climbing');
  await alice.page.getByLabel('Members').fill(`${bob.user}, ${carol.user}`);
  await alice.page.getByRole('button', { name: 'Create' }).click();
  await send(alice, 'Anyone in for the crag on Saturday?');
  await startChat(bob, alice.user);
  await send(bob, 'Hi Alice! Are we still on for tomorrow?');
  await openFromList(alice, bob.user);
  await message(alice, /still on/).waitFor();
  await send(alice, 'Yes, 10 am at the station');
  await message(alice, /10 am.*read$/).waitFor();
  await send(bob, 'Perfect, see you there');
  await message(alice, /Perfect/).waitFor();
  await bob.page.waitForTimeout(1200); // the server forwards one "typing" per second and device
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Bringing the', { delay: 30 });
  await alice.page.getByText('typing…').waitFor();
  for (const scheme of ['light', 'dark']) {
    await alice.page.emulateMedia({ colorScheme: scheme });
    await alice.page.screenshot({ path: `${dir}/desktop-${scheme}.png` });
  }
  for (const scheme of ['light', 'dark']) {
    await bob.page.setViewportSize({ width: 390, height: 780 });
    await bob.page.emulateMedia({ colorScheme: scheme });
    await bob.page.screenshot({ path: `${dir}/phone-chat-${scheme}.png` });
    await bob.page.getByRole('button', { name: 'Back to conversations' }).click();
    await bob.page.screenshot({ path: `${dir}/phone-list-${scheme}.png` });
    await openFromList(bob, alice.user);
  }
};

let code = 0;
try {
  if (!scenarios[scenario]) throw new Error(`no scenario '${scenario}': ${Object.keys(scenarios).join(', ')}`);
  await scenarios[scenario]();
  say(`passed: ${scenario}`);
} catch (error) {
  say(`FAILED: ${scenario}: ${error.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
