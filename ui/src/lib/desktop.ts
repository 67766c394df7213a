// The desktop around the web view: notifications, opening links, the tray's count.
import { isPermissionGranted, requestPermission, sendNotification } from "@tauri-apps/plugin-notification";
import { openUrl } from "@tauri-apps/plugin-opener";
import { commands, type UserStatus } from "./backend";
import { isSafeLink } from "./text";

let allowed: boolean | null = null;

export async function notify(title: string, body: string) {
  try {
    if (allowed == null) allowed = (await isPermissionGranted()) || (await requestPermission()) === "granted";
    if (allowed) sendNotification({ title, body });
  } catch {
    allowed = false; // no notification service: stay quiet
  }
}

export async function openExternal(href: string) {
  if (isSafeLink(href)) await openUrl(href);
}

/** The unread total for the window title and the tray, with my status for the tray. */
export function setUnread(n: number, status: UserStatus | null, connected: boolean) {
  void commands.setUnread(n, status, connected).catch(() => {});
}
