import { Browser, ConsoleMessage, expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { fillRoom, join, messages, openChat, say } from "./helpers";

for (const [label, viewport] of [
  ["desktop", { width: 1200, height: 700 }],
  ["phone", { width: 375, height: 640 }],
] as const) {
  test(`in a room with a long history the list follows new messages (${label})`, async ({ browser }) => {
    const local = await Hubbub.start({ HUBBUB_HISTORY_LIMIT: "60" });
    try {
      await fillRoom(browser, local.url, "busy", 60);
      const context = await browser.newContext({ viewport, isMobile: label === "phone" });
      const reader = await context.newPage();
      await reader.goto(`${local.url}/r/busy`);
      // The newest history is what a person arriving sees, before and after joining.
      await expect(messages(reader).getByText("old line 60 ✓", { exact: false })).toBeInViewport();
      await join(reader, "reader");
      await expect(messages(reader).getByText("old line 60 ✓", { exact: false })).toBeInViewport();
      const writer = await openChat(browser, `${local.url}/r/busy`);
      await join(writer, "writer");
      for (let i = 1; i <= 5; i++) {
        await say(writer, `new line ${i}`);
        await expect(messages(reader).getByText(`new line ${i}`, { exact: true })).toBeInViewport();
      }
      // The layout changes under it (a phone's keyboard opening, a window made smaller):
      // the newest message stays in view at once, not only when the next one arrives.
      await reader.setViewportSize({ width: viewport.width, height: viewport.height - 200 });
      await expect(messages(reader).getByText("new line 5", { exact: true })).toBeInViewport();
      await reader.setViewportSize(viewport);
      await expect(messages(reader).getByText("new line 5", { exact: true })).toBeInViewport();
      // It never decided the reader had scrolled away.
      await expect(reader.getByRole("button", { name: /new message/ })).toHaveCount(0);
      // The reader's own message lands in view too.
      await say(reader, "mine");
      await expect(messages(reader).getByText("mine", { exact: true })).toBeInViewport();
      await context.close();
    } finally {
      await local.stop();
    }
  });
}

/** Collects console messages about Content-Security-Policy violations. */
function cspViolations(page: Page): string[] {
  const seen: string[] = [];
  const record = (text: string) => {
    if (/content security policy|content-security-policy|refused to/i.test(text)) seen.push(text);
  };
  page.on("console", (m: ConsoleMessage) => record(m.text()));
  page.on("pageerror", (e) => record(String(e)));
  return seen;
}

test("the app hydrates and chats under its Content-Security-Policy, with no violation", async ({ browser }) => {
  const local = await Hubbub.start();
  try {
    const context = await browser.newContext();
    const alice = await context.newPage();
    const violations = cspViolations(alice);
    await alice.addInitScript(() => {
      (window as any).__csp = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        (window as any).__csp.push(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
    const response = await alice.goto(local.url);
    const policy = response!.headers()["content-security-policy"];
    expect(policy).toContain("'nonce-");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(response!.headers()["x-content-type-options"]).toBe("nosniff");
    const bob = await openChat(browser, local.url);
    await join(alice, "alice");
    await join(bob, "bob");
    await say(alice, "under a strict policy :tada:");
    await expect(messages(bob).getByText("under a strict policy 🎉")).toBeVisible();
    await say(bob, "<img src=x onerror=alert(1)>");
    await expect(messages(alice).getByText("<img src=x onerror=alert(1)>")).toBeVisible();
    expect(await alice.evaluate(() => (window as any).__csp)).toEqual([]);
    expect(violations).toEqual([]);
    await context.close();
  } finally {
    await local.stop();
  }
});

test("a script in the room URL does not run", async ({ browser }) => {
  const page = await browser.newPage();
  let dialogs = 0;
  page.on("dialog", async (d) => {
    dialogs++;
    await d.dismiss();
  });
  const local = await Hubbub.start();
  try {
    await page.goto(`${local.url}/r/%3C%2Ftitle%3E%3Cscript%3Ealert(document.domain)%3C%2Fscript%3E`);
    await expect(page.getByRole("alert")).toContainText("Room names are 1 to 32");
    await expect(page).toHaveTitle("hubbub");
    expect(dialogs).toBe(0);
  } finally {
    await page.close();
    await local.stop();
  }
});

test("a look-alike of an online name is explained in the join form", async ({ browser }) => {
  const local = await Hubbub.start();
  try {
    const alice = await openChat(browser, local.url);
    await join(alice, "alice");
    const mallory = await openChat(browser, local.url);
    await mallory.getByLabel("Email").fill("mallory@example.com");
    await mallory.getByLabel("Username").fill("alice\u200b");
    await mallory.getByRole("button", { name: "Join chat" }).click();
    await expect(mallory.getByText(/invisible characters/)).toBeVisible();
    await mallory.getByLabel("Username").fill("аlice"); // Cyrillic а
    await mallory.getByRole("button", { name: "Join chat" }).click();
    await expect(mallory.getByText(/looks too much like “alice”/)).toBeVisible();
    await expect(mallory.getByRole("textbox", { name: "Message" })).toHaveCount(0);
  } finally {
    await local.stop();
  }
});

test("a reader away for longer than one resume catches up on everything, in order", async ({ browser }) => {
  // resume-limit 5: the welcome carries 5 of the 12 missed messages, catch_up frames the rest.
  const local = await Hubbub.start({ HUBBUB_RESUME_LIMIT: "5" });
  try {
    const alice = await openChat(browser, local.url);
    const bob = await openChat(browser, local.url);
    await join(alice, "alice");
    await join(bob, "bob");
    await say(alice, "before");
    await expect(messages(bob).getByText("before")).toBeVisible();
    await bob.context().setOffline(true);
    await expect(bob.getByRole("status")).toContainText("Offline");
    const missed = Array.from({ length: 12 }, (_, i) => `missed ${i + 1}`);
    for (const t of missed) await say(alice, t);
    await expect(messages(alice).getByText("missed 12", { exact: true })).toBeVisible();
    await bob.context().setOffline(false);
    await expect(bob.getByRole("status")).toHaveText("Connected");
    for (const t of missed) await expect(messages(bob).getByText(t, { exact: true })).toHaveCount(1);
    const shown = await messages(bob).locator(".message .text").allTextContents();
    expect(shown.filter((t) => t.startsWith("missed"))).toEqual(missed);
    // Live again afterwards.
    await say(alice, "live");
    await expect(messages(bob).getByText("live", { exact: true })).toBeVisible();
  } finally {
    await local.stop();
  }
});
