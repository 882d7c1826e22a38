// Next-edit suggestions: the change the server predicts the user makes next, shown
// where it goes. After an edit and a pause, asks textDocument/copilotInlineEdit (the
// request Copilot's language server answers) and decorates the answer: the text it
// replaces struck through, the line as it would become after it. Tab jumps to the
// edit, a second Tab applies it, Escape dismisses it; any other edit dismisses it
// too. The prediction is the server's: this is display and keys only.
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';

export const NEXT_EDIT = {
  request: 'textDocument/copilotInlineEdit',
  tab: 'tandem-ls.nextEdit.tab',
  dismiss: 'tandem-ls.nextEdit.dismiss',
  context: 'tandem.nextEditVisible',
} as const;

/** Idle time after an edit before asking (ms). */
const PAUSE_MS = 400;

interface WirePosition {
  line: number;
  character: number;
}
interface WireEdit {
  range: { start: WirePosition; end: WirePosition };
  text: string;
  textDocument: { uri: string; version: number | null };
  command?: { title: string; command: string; arguments?: unknown[] };
}

interface Shown {
  editor: vscode.TextEditor;
  version: number;
  range: vscode.Range;
  text: string;
  command?: WireEdit['command'];
}

/** The line(s) the edited span becomes: the edit applied to its whole lines. */
export function linesAfter(document: vscode.TextDocument, range: vscode.Range, text: string): string[] {
  const first = document.lineAt(range.start.line).text;
  const last = document.lineAt(range.end.line).text;
  return (first.slice(0, range.start.character) + text + last.slice(range.end.character)).split('\n');
}

export class NextEdits implements vscode.Disposable {
  private shown: Shown | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pending: vscode.CancellationTokenSource | undefined;
  private readonly removed = vscode.window.createTextEditorDecorationType({
    textDecoration: 'line-through',
    backgroundColor: new vscode.ThemeColor('diffEditor.removedTextBackground'),
  });
  private readonly added = vscode.window.createTextEditorDecorationType({
    after: {
      color: new vscode.ThemeColor('editorGhostText.foreground'),
      backgroundColor: new vscode.ThemeColor('diffEditor.insertedTextBackground'),
      margin: '0 0 0 2em',
    },
  });
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly enabled: () => boolean,
  ) {
    this.subscriptions = [
      this.removed,
      this.added,
      vscode.workspace.onDidChangeTextDocument((e) => this.changed(e)),
      vscode.window.onDidChangeActiveTextEditor(() => this.dismiss()),
      vscode.commands.registerCommand(NEXT_EDIT.tab, () => this.tab()),
      vscode.commands.registerCommand(NEXT_EDIT.dismiss, () => this.dismiss()),
    ];
  }

  private changed(e: vscode.TextDocumentChangeEvent): void {
    const editor = vscode.window.activeTextEditor;
    if (!editor || e.document !== editor.document || e.contentChanges.length === 0) return;
    this.dismiss();
    if (!this.enabled()) return;
    this.timer = setTimeout(() => void this.ask(editor), PAUSE_MS);
  }

  private async ask(editor: vscode.TextEditor): Promise<void> {
    const client = this.client();
    if (!client?.isRunning() || vscode.window.activeTextEditor !== editor) return;
    const document = editor.document;
    const version = document.version;
    const c2p = client.code2ProtocolConverter;
    this.pending = new vscode.CancellationTokenSource();
    let answer: { edits?: WireEdit[] } | null;
    try {
      answer = await client.sendRequest(
        NEXT_EDIT.request,
        {
          textDocument: { uri: c2p.asUri(document.uri), version },
          position: c2p.asPosition(editor.selection.active),
        },
        this.pending.token,
      );
    } catch {
      return; // cancelled by a newer edit, or the server could not say
    }
    const edit = answer?.edits?.[0];
    if (!edit || document.version !== version || vscode.window.activeTextEditor !== editor) return;
    const range = client.protocol2CodeConverter.asRange(edit.range);
    this.show({ editor, version, range, text: edit.text, command: edit.command });
  }

  private show(shown: Shown): void {
    this.shown = shown;
    const { editor, range, text } = shown;
    const after = linesAfter(editor.document, range, text).join(' ⏎ ');
    const end = editor.document.lineAt(range.end.line).range.end;
    editor.setDecorations(this.removed, range.isEmpty ? [] : [range]);
    editor.setDecorations(this.added, [
      { range: new vscode.Range(end, end), renderOptions: { after: { contentText: `→ ${after}` } } },
    ]);
    void vscode.commands.executeCommand('setContext', NEXT_EDIT.context, true);
  }

  /** Tab: jump to the suggestion; when the cursor is on it, apply it. */
  async tab(): Promise<void> {
    const shown = this.shown;
    if (!shown || shown.editor.document.version !== shown.version) {
      this.dismiss();
      return;
    }
    const { editor, range } = shown;
    if (!editor.selection.active.isEqual(range.start)) {
      editor.selection = new vscode.Selection(range.start, range.start);
      editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      return;
    }
    this.dismiss();
    const applied = await editor.edit((b) => b.replace(range, shown.text));
    if (applied && shown.command) {
      await this.client()?.sendRequest('workspace/executeCommand', {
        command: shown.command.command,
        arguments: shown.command.arguments ?? [],
      });
    }
  }

  /** Escape (or any edit): remove the suggestion and stop asking for it. */
  dismiss(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending?.cancel();
    this.pending = undefined;
    if (this.shown) {
      this.shown.editor.setDecorations(this.removed, []);
      this.shown.editor.setDecorations(this.added, []);
    }
    this.shown = undefined;
    void vscode.commands.executeCommand('setContext', NEXT_EDIT.context, false);
  }

  dispose(): void {
    this.dismiss();
    for (const s of this.subscriptions) s.dispose();
  }
}
