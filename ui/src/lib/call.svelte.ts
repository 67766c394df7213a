// The call in progress, the DM calls ringing for me and my missed calls, fed by the `call`
// events of the Rust side and the gateway's ring events. Screens read it and call its
// actions; the audio itself never touches the web view.
import { SvelteMap } from "svelte/reactivity";
import { bindPushToTalk, type PttBinding } from "./ptt";
import {
  commands,
  describeError,
  type AudioSettings,
  type CallEvent,
  type CallRing,
  type EndReason,
  type Event,
  type MissedCall,
  type PeerQuality,
} from "./backend";

export type Participant = {
  user_id: number;
  muted: boolean;
  deafened: boolean;
  speaking: boolean;
  /** Audio flows with them (always true for me). */
  connected: boolean;
  quality: PeerQuality | null;
  /** My playback volume for them, 0–4. */
  volume: number;
};

export type ActiveCall = {
  groupId: number;
  participants: SvelteMap<number, Participant>;
};

function participant(user_id: number, muted = false, deafened = false): Participant {
  return { user_id, muted, deafened, speaking: false, connected: false, quality: null, volume: 1 };
}

/** What to tell a person about how a call ended; null when they ended it themselves. */
export function endMessage(r: EndReason): string | null {
  switch (r.reason) {
    case "left":
      return null;
    case "moved":
      return "You joined the call from another device.";
    case "ring":
      return r.outcome === "declined" ? "The call was declined." : r.outcome === "missed" ? "No answer." : null;
    case "refused":
      return r.message;
    case "session_ended":
      return "The call ended: you were logged out.";
    case "failed":
      return `The call failed: ${r.message}`;
  }
}

export class Calls {
  active = $state<ActiveCall | null>(null);
  /** Joining (devices opening, the server answering): the call buttons wait. */
  joining = $state<number | null>(null);
  muted = $state(false);
  deafened = $state(false);
  /** My microphone's level (dBFS) while in a call. */
  inputLevel = $state(-100);
  /** DM calls ringing for me: group → caller and when it stops ringing (ms since epoch). */
  ringing = new SvelteMap<number, { caller_id: number; until: number }>();
  missed = $state<MissedCall[]>([]);
  /** Why the last call ended, when that is news. */
  notice = $state<string | null>(null);
  /** The saved audio settings (devices, processing, push-to-talk). */
  audio = $state<AudioSettings | null>(null);
  /** Where the push-to-talk key is listened for once bound: anywhere on the desktop (a
   * global shortcut), or in this window only (the shortcut could not be registered). */
  pttScope = $state<"desktop" | "window" | null>(null);
  private ptt: PttBinding | null = null;
  /** Counts bindings, so one overtaken by a newer one (settings saved twice) lets go. */
  private pttBinds = 0;
  /** Missed calls already seen (their conversation was opened). */
  seenMissed = new Set<number>();

  constructor(private me: () => number | null) {}

  // --- actions ---------------------------------------------------------------------------

  /** Joins (or, in a DM, calls / answers) a conversation's call. */
  async join(groupId: number) {
    if (this.joining != null) return;
    this.joining = groupId;
    this.notice = null;
    try {
      const me = this.me();
      const participants = new SvelteMap<number, Participant>();
      if (me != null) participants.set(me, { ...participant(me, this.muted, this.deafened), connected: true });
      // Set before the command returns: the first events may arrive ahead of its answer.
      this.active = { groupId, participants };
      this.inputLevel = -100;
      await commands.joinCall(groupId, this.muted, this.deafened);
      this.ringing.delete(groupId);
      await this.bindPtt();
    } catch (e) {
      if (this.active?.groupId === groupId) this.active = null;
      this.notice = describeError(e);
    } finally {
      this.joining = null;
    }
  }

  async leave() {
    this.active = null;
    void this.bindPtt();
    try {
      await commands.leaveCall();
    } catch {
      // Already over: nothing to leave.
    }
  }

  async decline(groupId: number) {
    this.ringing.delete(groupId);
    try {
      await commands.declineCall(groupId);
    } catch (e) {
      this.notice = describeError(e);
    }
  }

  async setMuted(muted: boolean) {
    this.muted = muted;
    this.updateMe({ muted });
    if (this.active) await commands.setMuted(muted).catch((e) => (this.notice = describeError(e)));
  }

  async setDeafened(deafened: boolean) {
    this.deafened = deafened;
    this.updateMe({ deafened });
    if (this.active) await commands.setDeafened(deafened).catch((e) => (this.notice = describeError(e)));
  }

  async setVolume(userId: number, volume: number) {
    const p = this.active?.participants.get(userId);
    if (p) this.active?.participants.set(userId, { ...p, volume });
    await commands.setVolume(userId, volume).catch((e) => (this.notice = describeError(e)));
  }

  async loadAudio() {
    try {
      this.audio = await commands.audioSettings();
    } catch {
      this.audio = null;
    }
  }

  async saveAudio(settings: AudioSettings) {
    await commands.setAudioSettings(settings);
    this.audio = settings;
    await this.bindPtt();
  }

  /** Binds (or unbinds) the push-to-talk key to match the settings and the call. */
  async bindPtt() {
    const bind = ++this.pttBinds;
    this.ptt?.unbind();
    this.ptt = null;
    this.pttScope = null;
    if (!this.active || !this.audio?.push_to_talk) return;
    const binding = await bindPushToTalk(this.audio.ptt_key, (pressed) => void commands.pushToTalk(pressed).catch(() => {}));
    if (bind !== this.pttBinds) {
      binding.unbind();
      return;
    }
    this.ptt = binding;
    this.pttScope = binding.fallback ? "window" : "desktop";
  }

  /** Missed calls of a conversation not yet seen. */
  missedIn(groupId: number): MissedCall[] {
    return this.missed.filter((m) => m.group_id === groupId && !this.seenMissed.has(m.missed_call_id));
  }

  markMissedSeen(groupId: number) {
    const unseen = this.missedIn(groupId);
    if (unseen.length === 0) return;
    for (const m of unseen) this.seenMissed.add(m.missed_call_id);
    this.missed = [...this.missed];
  }

  async refreshMissed() {
    try {
      this.missed = (await commands.missedCalls()).missed_calls;
    } catch {
      // Offline: the list comes with the next `ready`.
    }
  }

  // --- events ----------------------------------------------------------------------------

  /** The rings of a `ready` snapshot (after a reconnect, or at start). */
  onReady(rings: CallRing[]) {
    this.ringing.clear();
    for (const r of rings) this.ringing.set(r.group_id, { caller_id: r.caller_id, until: Date.now() + Number(r.expires_in_ms) });
    void this.refreshMissed();
  }

  onServerEvent(ev: Event) {
    switch (ev.type) {
      case "call_ringing":
        if (ev.caller_id !== this.me()) this.ringing.set(ev.group_id, { caller_id: ev.caller_id, until: Date.now() + Number(ev.expires_in_ms) });
        break;
      case "call_ring_ended":
        this.ringing.delete(ev.group_id);
        if (ev.reason === "missed") void this.refreshMissed();
        break;
    }
  }

  onCallEvent(groupId: number, ev: CallEvent) {
    const call = this.active;
    if (!call || call.groupId !== groupId) return;
    const ps = call.participants;
    const patch = (userId: number, p: Partial<Participant>) => {
      const now = ps.get(userId) ?? participant(userId);
      ps.set(userId, { ...now, ...p });
    };
    switch (ev.type) {
      case "participant_joined":
      case "participant_updated":
        patch(ev.participant.user_id, { muted: ev.participant.muted, deafened: ev.participant.deafened });
        break;
      case "participant_left":
        ps.delete(ev.user_id);
        break;
      case "peer_connected":
        patch(ev.user_id, { connected: true });
        break;
      case "peer_disconnected":
        if (ps.has(ev.user_id)) patch(ev.user_id, { connected: false, speaking: false });
        break;
      case "speaking":
        if (ps.has(ev.user_id)) patch(ev.user_id, { speaking: ev.speaking });
        break;
      case "input_level":
        // No level (NaN) before the first audio frame.
        this.inputLevel = ev.level_db ?? -100;
        break;
      case "stats":
        for (const q of ev.peers) if (ps.has(q.user_id)) patch(q.user_id, { quality: q });
        break;
      case "refused":
        this.notice = ev.message;
        break;
      case "resumed":
        break;
      case "ended":
        this.active = null;
        void this.bindPtt();
        this.notice = endMessage(ev.reason);
        break;
    }
  }

  /** Whether a user is ringing me in this DM right now. */
  ringingIn(groupId: number, now: number): boolean {
    const r = this.ringing.get(groupId);
    return r != null && r.until > now;
  }

  private updateMe(p: Partial<Participant>) {
    const me = this.me();
    const mine = me != null ? this.active?.participants.get(me) : undefined;
    if (mine && me != null) this.active?.participants.set(me, { ...mine, ...p });
  }

  reset() {
    this.active = null;
    void this.bindPtt();
    this.ringing.clear();
    this.missed = [];
    this.notice = null;
  }
}

/** A dBFS level as a 0–1 meter fill: -60 dB and below is empty. */
export function meterFill(levelDb: number): number {
  return Math.min(1, Math.max(0, (levelDb + 60) / 60));
}

/** RTT, loss and route in words, for a participant's hover. */
export function describeQuality(q: PeerQuality | null): string {
  if (!q) return "Connecting…";
  const rtt = q.rtt_ms != null ? `${Math.round(q.rtt_ms)} ms` : "measuring";
  const loss = `${((q.loss ?? 0) * 100).toFixed(1)}%`;
  const route = q.route === "relay" ? "relayed (TURN)" : q.route === "srflx" ? "direct (through NAT)" : q.route === "host" ? "direct" : "unknown";
  return `Round trip ${rtt} · loss ${loss} · ${route}`;
}
