import { afterEach, describe, expect, it } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import AudioSettings from "./AudioSettings.svelte";
import { app } from "../lib/app.svelte";
import type { AudioSettings as Settings, MicTestResult } from "../lib/backend";

const SAVED: Settings = {
  input: "pulse",
  output: null,
  echo_cancellation: false,
  noise_suppression: true,
  auto_gain: true,
  push_to_talk: false,
  ptt_key: "F8",
};

/** The Rust side as the form sees it: `saved` on disk, `refuse` as the answer to a save,
 *  `micTest` what the microphone test finds (an Error: what it throws); the microphone
 *  tests asked for go to `tests`. */
function backend(saved: Settings, refuse?: unknown, micTest?: MicTestResult | Error, tests: unknown[] = []) {
  const sent: Settings[] = [];
  mockIPC((cmd, args) => {
    if (cmd === "mic_test") {
      tests.push(args);
      if (micTest instanceof Error) throw { code: "busy", message: micTest.message, field: null, retry_after_secs: null };
      return micTest;
    }
    if (cmd === "audio_devices") return { inputs: ["pulse"], outputs: ["pulse"] };
    if (cmd === "audio_settings") return saved;
    if (cmd === "set_audio_settings") {
      if (refuse) throw refuse;
      sent.push((args as { settings: Settings }).settings);
      return null;
    }
    return null;
  });
  return sent;
}

const box = (id: string) => screen.getByTestId(id) as HTMLInputElement;

describe("AudioSettings", () => {
  afterEach(() => {
    cleanup();
    clearMocks();
    app.calls.audio = null;
  });

  it("shows the saved processing switches, one checkbox each", async () => {
    backend({ ...SAVED, echo_cancellation: true, auto_gain: false });
    render(AudioSettings);
    await screen.findByTestId("echo-cancellation");
    expect(box("echo-cancellation").checked).toBe(true);
    expect(box("noise-suppression").checked).toBe(true);
    expect(box("auto-gain").checked).toBe(false);
    // The switches apply to a call in progress: no "from the next call" any more.
    expect(screen.getByTestId("audio-settings").textContent).not.toContain("next call");
  });

  it("saves a toggled switch and keeps every other setting as it was", async () => {
    const sent = backend(SAVED);
    render(AudioSettings);
    await fireEvent.click(await screen.findByTestId("echo-cancellation"));
    await fireEvent.click(box("auto-gain"));
    await fireEvent.click(screen.getByTestId("audio-save"));
    await screen.findByText("Saved.");
    expect(sent).toEqual([{ ...SAVED, echo_cancellation: true, auto_gain: false }]);
    // What the app remembers is what was saved, for the next time the page opens.
    expect(app.calls.audio).toEqual(sent[0]);
  });

  it("shows a refused save as an error and does not claim it saved", async () => {
    backend(SAVED, { code: "device", message: 'Could not open the input device "pulse". Pick another in Settings.', field: "input", retry_after_secs: null });
    render(AudioSettings);
    await fireEvent.click(await screen.findByTestId("echo-cancellation"));
    await fireEvent.click(screen.getByTestId("audio-save"));
    await waitFor(() => expect(screen.getByTestId("audio-error").textContent).toContain("Could not open the input device"));
    expect(screen.queryByText("Saved.")).toBeNull();
    expect(app.calls.audio).toEqual(SAVED);
  });

  it("tests the microphone and speaker the form shows, saved or not, and says what it found", async () => {
    const tests: unknown[] = [];
    const found: MicTestResult = {
      level_db: -24.4,
      peak_db: -6,
      noise_floor_db: -62,
      clipped_percent: 0,
      echo: { kind: "present", delay_ms: 48.2, return_loss_db: 18.6 },
    };
    backend(SAVED, undefined, found, tests);
    render(AudioSettings);
    // Switch the microphone to the system default without saving: the test uses it.
    const input = (await screen.findByTestId("input-device")) as HTMLSelectElement;
    input.value = "";
    await fireEvent.change(input);
    await fireEvent.click(screen.getByTestId("mic-test-start"));
    const result = await screen.findByTestId("mic-test-result");
    expect(tests).toEqual([{ input: null, output: null }]);
    expect(screen.getByTestId("mic-test-level").textContent).toContain("Good (-24 dB)");
    expect(screen.getByTestId("mic-test-background").textContent).toContain("Quiet (-62 dB)");
    expect(screen.getByTestId("mic-test-echo").textContent).toContain("Your speakers reach the microphone: it hears them 19 dB quieter than played, 48 ms later.");
    expect(result.textContent).not.toContain("Clipping");
    expect(screen.getByTestId("mic-test-start").textContent).toBe("Test microphone");
  });

  it("says why the microphone test could not run", async () => {
    backend(SAVED, undefined, new Error("Leave the call to test the microphone."));
    render(AudioSettings);
    await fireEvent.click(await screen.findByTestId("mic-test-start"));
    await waitFor(() => expect(screen.getByTestId("mic-test-error").textContent).toBe("Leave the call to test the microphone."));
    expect(screen.queryByTestId("mic-test-result")).toBeNull();
  });
});
