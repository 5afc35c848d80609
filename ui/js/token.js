// The access token: from the page's URL (`?token=…`), kept for the tab in sessionStorage.
// It is not a cookie on purpose: a cookie would ride along on cross-site requests.

const STORAGE_KEY = 'kotodama.token';

/**
 * Reads the token from the URL, or from this tab's storage after a reload.
 * @param {{strip: boolean}} options strip: remove it from the address bar (the panel; a
 *   screen-shared address bar must not show it). The overlay keeps it: OBS reloads the URL it
 *   was given, and nobody sees an OBS source's address bar.
 * @returns {string} the token, or '' when there is none
 */
export function takeToken({ strip }) {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    try {
      sessionStorage.setItem(STORAGE_KEY, fromUrl);
    } catch {
      // Storage can be disabled (privacy settings); the token then lives only in memory.
    }
    if (strip) {
      url.searchParams.delete('token');
      window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    }
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(STORAGE_KEY) || '';
  } catch {
    return '';
  }
}
