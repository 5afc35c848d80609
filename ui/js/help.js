// The Help card: "Open logs folder" (`POST /diagnostics/open-logs`: the server opens it in the
// platform's file manager, or says where it is) and "Copy diagnostics" (`GET /diagnostics`:
// versions, changed settings with secrets masked, health, the last warnings and errors).

export class HelpCard {
  /**
   * @param {import('./api.js').Api} api
   * @param {{open: HTMLButtonElement, copy: HTMLButtonElement, result: HTMLElement, text: HTMLTextAreaElement}} elements
   */
  constructor(api, elements) {
    this.api = api;
    this.elements = elements;
    elements.open.addEventListener('click', () => this.openLogs());
    elements.copy.addEventListener('click', () => this.copyDiagnostics());
  }

  async openLogs() {
    const { result } = this.elements;
    try {
      const answer = await this.api.json('POST', '/diagnostics/open-logs');
      result.textContent = `Opened ${answer.folder}`;
    } catch (error) {
      // No file manager here (a headless server): the message names the folder.
      result.textContent = error.message;
    }
  }

  async copyDiagnostics() {
    const { result, text } = this.elements;
    let report;
    try {
      report = JSON.stringify(await this.api.json('GET', '/diagnostics'), null, 2);
    } catch (error) {
      result.textContent = `Cannot read the diagnostics: ${error.message}`;
      return;
    }
    text.value = report;
    try {
      await navigator.clipboard.writeText(report);
      text.hidden = true;
      result.textContent = 'Diagnostics copied: paste them into your bug report.';
    } catch {
      // The clipboard refused (permissions, an unfocused page): the text is shown, selected.
      text.hidden = false;
      text.focus();
      text.select();
      result.textContent = 'Press Ctrl+C to copy the selected diagnostics.';
    }
  }
}

/** Shows or hides the audio card's "no voice" notice from `/health`'s `tts.warning`. */
export function showVoiceWarning(element, health) {
  const warning = health.tts?.warning ?? '';
  element.textContent = warning;
  element.hidden = !warning;
}
