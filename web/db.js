// This browser's sign-in, in IndexedDB (not localStorage: kept out of reach of synchronous script access, and
// the place the end-to-end keys will join it).

const NAME = 'switchboard';
const STORE = 'session';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request?.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** The saved sign-in ({user, device, token}), or undefined. */
export const loadSession = () => run('readonly', (store) => store.get('current'));

export const saveSession = (session) => run('readwrite', (store) => store.put(session, 'current'));

export const clearSession = () => run('readwrite', (store) => store.delete('current'));
