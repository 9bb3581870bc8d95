// The service worker: a Web Push from the server says which conversation has something new (never what:
// the text stays end-to-end encrypted); it shows a notification, and a click opens the page.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data?.json() ?? {};
  } catch {
    // not JSON: a notification without details
  }
  const from = typeof data.from === 'string' ? data.from : 'someone';
  event.waitUntil(self.registration.showNotification('Switchboard', {
    body: `New message from ${from}`,
    tag: typeof data.conv === 'string' ? data.conv : 'switchboard', // one per conversation, the newest
    data,
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    if (windows.length) return windows[0].focus();
    return self.clients.openWindow('/');
  })());
});
