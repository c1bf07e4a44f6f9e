import { Browser, expect, Page } from "@playwright/test";
import { createHash } from "node:crypto";

export const md5 = (s: string) => createHash("md5").update(s.trim().toLowerCase()).digest("hex");

/** Opens the chat in a fresh browser context (its own storage: a different person). */
export async function openChat(browser: Browser, url: string): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  return page;
}

/** Fills the join form the way a person would, and waits until the chat is ready. */
export async function join(page: Page, username: string, email = `${username}@example.com`) {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Username").fill(username);
  await page.getByRole("button", { name: "Join chat" }).click();
  await expect(page.getByRole("textbox", { name: "Message" })).toBeVisible();
}

export async function say(page: Page, text: string) {
  const input = page.getByRole("textbox", { name: "Message" });
  await input.fill(text);
  await input.press("Enter");
}

export const messages = (page: Page) => page.getByRole("log", { name: "Messages" });
export const online = (page: Page) => page.getByRole("list", { name: "People online" });

/** Each name opens the chat in its own browser context and joins, in order. */
export async function people(browser: Browser, url: string, ...names: string[]): Promise<Page[]> {
  const pages: Page[] = [];
  for (const name of names) {
    const page = await openChat(browser, url);
    await join(page, name);
    pages.push(page);
  }
  return pages;
}

// Posts `count` messages into `room` over a plain WebSocket from a throw-away page of the
// site, as another client would: the history a reader finds when they arrive.
export async function fillRoom(browser: Browser, url: string, room: string, count: number) {
  const page = await browser.newPage();
  // A page of the site: its policy lets it open the site's socket (`/healthz` allows nothing).
  await page.goto(`${url}/r/filler`);
  await page.evaluate(
    async ({ room, count }) => {
      const ws = new WebSocket(`ws://${location.host}/ws`);
      const frames: any[] = [];
      let wake = () => {};
      ws.onmessage = (e) => {
        frames.push(JSON.parse(e.data));
        wake();
      };
      const next = async () => {
        while (frames.length === 0) await new Promise<void>((r) => (wake = r));
        return frames.shift();
      };
      await new Promise((r) => (ws.onopen = r));
      // A name of its own per room: a name belongs to one account, and this page has no cookie.
      ws.send(JSON.stringify({ type: "join", username: `historian ${room}`, email: "h@example.com", room }));
      if ((await next()).type !== "welcome") throw new Error("no welcome");
      for (let i = 1; i <= count; i++) {
        ws.send(JSON.stringify({ type: "message", text: `old line ${i} ✓ <b>not bold</b>` }));
        const frame = await next();
        if (frame.type !== "message") throw new Error(JSON.stringify(frame));
      }
      ws.close();
    },
    { room, count },
  );
  await page.close();
}
