import { afterEach, describe, expect, it } from "vitest";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { Calls, describeQuality, endMessage, meterFill } from "./call.svelte";
import { shouldNotify } from "./app.svelte";

const ME = 1;

async function inCall(calls: Calls, groupId = 7) {
  await calls.join(groupId);
  expect(calls.active?.groupId).toBe(groupId);
}

describe("Calls", () => {
  afterEach(() => clearMocks());

  it("follows participants, their flags, speaking and link quality from call events", async () => {
    mockIPC(() => null);
    const calls = new Calls(() => ME);
    await inCall(calls);
    calls.onCallEvent(7, { type: "participant_joined", participant: { user_id: 2, muted: false, deafened: false } });
    calls.onCallEvent(7, { type: "peer_connected", user_id: 2 });
    calls.onCallEvent(7, { type: "speaking", user_id: 2, speaking: true });
    calls.onCallEvent(7, { type: "participant_updated", participant: { user_id: 2, muted: true, deafened: false } });
    const q = { user_id: 2, rtt_ms: 12.4, loss: 0.015, remote_loss: 0, jitter_ms: 1, jitter_buffer_ms: 40, mouth_to_ear_ms: 80, route: "host" };
    calls.onCallEvent(7, { type: "stats", peers: [q] });
    // Events of another conversation's call are not this one's.
    calls.onCallEvent(8, { type: "participant_left", user_id: 2 });
    const p = calls.active?.participants.get(2);
    expect(p).toMatchObject({ muted: true, speaking: true, connected: true, quality: q });
    expect(calls.active?.participants.get(ME)?.connected).toBe(true);

    calls.onCallEvent(7, { type: "participant_left", user_id: 2 });
    expect([...(calls.active?.participants.keys() ?? [])]).toEqual([ME]);
  });

  it("ends the call on `ended` and says why when it was not my doing", async () => {
    mockIPC(() => null);
    const calls = new Calls(() => ME);
    await inCall(calls);
    calls.onCallEvent(7, { type: "ended", reason: { reason: "ring", outcome: "declined" } });
    expect(calls.active).toBeNull();
    expect(calls.notice).toBe("The call was declined.");
    expect(endMessage({ reason: "left" })).toBeNull();
  });

  it("shows a refused join as a notice and stays out of the call", async () => {
    mockIPC((cmd) => {
      if (cmd === "join_call") throw { code: "call_full", message: "The call is full.", field: null, retry_after_secs: null };
      return null;
    });
    const calls = new Calls(() => ME);
    await calls.join(7);
    expect(calls.active).toBeNull();
    expect(calls.notice).toBe("The call is full.");
  });

  it("binds push-to-talk as a global shortcut, else to the key in this window, and lets go after the call", async () => {
    let taken = false;
    const pressed: boolean[] = [];
    mockIPC((cmd, args) => {
      if (cmd === "plugin:global-shortcut|register" && taken) throw "HotKey already registered";
      if (cmd === "audio_settings") return { input: null, output: null, echo_cancellation: false, noise_suppression: true, auto_gain: true, push_to_talk: true, ptt_key: "F8" };
      if (cmd === "push_to_talk") pressed.push((args as { pressed: boolean }).pressed);
      return null;
    });
    const calls = new Calls(() => ME);
    await calls.loadAudio();
    await inCall(calls);
    expect(calls.pttScope).toBe("desktop");

    // Another app holds the key: the window listens instead, for the key alone.
    taken = true;
    await calls.bindPtt();
    expect(calls.pttScope).toBe("window");
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "F8", code: "F8", ctrlKey: true }));
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "F8", code: "F8" }));
    window.dispatchEvent(new KeyboardEvent("keyup", { key: "F8", code: "F8" }));
    expect(pressed).toEqual([true, false]);

    await calls.leave();
    expect(calls.pttScope).toBeNull();
    window.dispatchEvent(new KeyboardEvent("keydown", { key: "F8", code: "F8" }));
    expect(pressed).toEqual([true, false]);
  });

  it("rings until answered elsewhere, and never for my own call", () => {
    mockIPC(() => ({ missed_calls: [] }));
    const calls = new Calls(() => ME);
    calls.onServerEvent({ type: "call_ringing", group_id: 7, caller_id: ME, expires_in_ms: 30000 });
    expect(calls.ringing.size).toBe(0);
    calls.onServerEvent({ type: "call_ringing", group_id: 7, caller_id: 2, expires_in_ms: 30000 });
    expect(calls.ringingIn(7, Date.now())).toBe(true);
    expect(calls.ringingIn(7, Date.now() + 31000)).toBe(false);
    calls.onServerEvent({ type: "call_ring_ended", group_id: 7, caller_id: 2, reason: "answered" });
    expect(calls.ringing.size).toBe(0);
  });

  it("counts a missed call until its conversation is opened", () => {
    const calls = new Calls(() => ME);
    calls.missed = [{ missed_call_id: 5, group_id: 7, caller_id: 2, called_at: "2026-12-01T10:00:00Z" }];
    expect(calls.missedIn(7)).toHaveLength(1);
    calls.markMissedSeen(7);
    expect(calls.missedIn(7)).toHaveLength(0);
  });

  it("describes levels and quality for people", () => {
    expect(meterFill(-100)).toBe(0);
    expect(meterFill(0)).toBe(1);
    expect(meterFill(-30)).toBeCloseTo(0.5);
    expect(describeQuality(null)).toBe("Connecting…");
    expect(
      describeQuality({ user_id: 2, rtt_ms: 40.2, loss: 0.02, remote_loss: 0, jitter_ms: 0, jitter_buffer_ms: 0, mouth_to_ear_ms: 0, route: "relay" }),
    ).toBe("Round trip 40 ms · loss 2.0% · relayed (TURN)");
  });
});

describe("shouldNotify", () => {
  it("respects focus, Do Not Disturb and the conversation's level", () => {
    expect(shouldNotify(true, "online", "all", false)).toBe(false);
    expect(shouldNotify(false, "dnd", "all", true)).toBe(false);
    expect(shouldNotify(false, "online", "all", false)).toBe(true);
    expect(shouldNotify(false, "online", "mentions", false)).toBe(false);
    expect(shouldNotify(false, "online", "mentions", true)).toBe(true);
    expect(shouldNotify(false, "online", "muted", true)).toBe(false);
  });
});
