import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, messages, openChat, people, say } from "./helpers";

const status = (page: Page) => page.getByRole("status");

/** Each text appears exactly once, in this order, in the message list. */
async function expectExactlyOnceInOrder(page: Page, texts: string[]) {
  for (const t of texts) await expect(messages(page).getByText(t, { exact: true })).toHaveCount(1);
  const shown = await messages(page).locator(".message .text").allTextContents();
  const positions = texts.map((t) => shown.indexOf(t));
  expect(positions).toEqual([...positions].sort((a, b) => a - b));
}

test("an offline reader gets every missed message once, and its outbox is delivered", async ({ browser }) => {
  const server = await Hubbub.start();
  try {
    const [alice, bob] = await people(browser, server.url, "alice", "bob");
    await say(alice, "before");
    await expect(messages(bob).getByText("before")).toBeVisible();

    await bob.context().setOffline(true);
    await expect(status(bob)).toContainText("Offline");
    for (const t of ["missed 1", "missed 2", "missed 3"]) await say(alice, t);
    // Typed while offline: waits in the outbox, visibly pending.
    await say(bob, "written offline");
    const pending = messages(bob).getByRole("listitem").filter({ hasText: "written offline" });
    await expect(pending).toContainText("Sending…");
    await expect(messages(alice).getByText("written offline")).toHaveCount(0);

    await bob.context().setOffline(false);
    await expect(status(bob)).toHaveText("Connected");
    await expectExactlyOnceInOrder(bob, ["before", "missed 1", "missed 2", "missed 3", "written offline"]);
    await expect(pending).toHaveCount(1);
    await expect(messages(bob).getByText("Sending…")).toHaveCount(0);
    await expectExactlyOnceInOrder(alice, ["missed 3", "written offline"]);
  } finally {
    await server.stop();
  }
});

test("a reload shows the history, once, and rejoins", async ({ browser }) => {
  const server = await Hubbub.start();
  try {
    const alice = await openChat(browser, server.url);
    await join(alice, "alice");
    for (const t of ["one", "two", "three"]) await say(alice, t);
    await expect(messages(alice).getByText("three")).toBeVisible();
    await alice.reload();
    await expect(status(alice)).toHaveText("Connected");
    await expectExactlyOnceInOrder(alice, ["one", "two", "three"]);

    // A newcomer sees the history before joining: it is in the server-rendered page.
    const context = await browser.newContext({ javaScriptEnabled: false });
    const noScript = await context.newPage();
    await noScript.goto(server.url);
    await expect(noScript.getByText("three", { exact: true })).toBeVisible();
    // The join form is a form: it works without the script too (see accounts.spec.ts).
    await expect(noScript.getByRole("button", { name: "Join chat" })).toBeEnabled();
    await context.close();
  } finally {
    await server.stop();
  }
});

test("both browsers recover by themselves when the server is killed and restarted", async ({ browser }) => {
  const server = await Hubbub.start();
  try {
    const [alice, bob] = await people(browser, server.url, "alice", "bob");
    await say(alice, "before the crash");
    await expect(messages(bob).getByText("before the crash")).toBeVisible();

    await server.kill9();
    await expect(status(alice)).toContainText("Reconnecting");
    await say(bob, "during the outage");
    await server.launch(); // same port, same database
    await expect(status(alice)).toHaveText("Connected", { timeout: 30_000 });
    await expect(status(bob)).toHaveText("Connected", { timeout: 30_000 });
    await say(alice, "after the restart");
    for (const page of [alice, bob]) {
      await expectExactlyOnceInOrder(page, ["before the crash", "during the outage", "after the restart"]);
    }
  } finally {
    await server.stop();
  }
});

test("scrolling up loads older messages page by page", async ({ browser }) => {
  const server = await Hubbub.start({ HUBBUB_HISTORY_LIMIT: "10" });
  try {
    const writer = await openChat(browser, server.url);
    await join(writer, "writer");
    for (let i = 1; i <= 25; i++) await say(writer, `line ${i}`);
    await expect(messages(writer).getByText("line 25", { exact: true })).toBeVisible();

    const reader = await openChat(browser, server.url);
    // Small enough that the first page overflows: otherwise the list sits at its top, where
    // it (rightly) fetches older pages by itself straight away.
    await reader.setViewportSize({ width: 800, height: 420 });
    await join(reader, "reader");
    await expect(messages(reader).getByText("line 25", { exact: true })).toBeVisible();
    await expect(messages(reader).getByText("line 15", { exact: true })).toHaveCount(0);
    // Offered as a button too (for the keyboard); it is reached at the top of the list, and
    // reaching the top is what loads the previous page.
    await expect(reader.getByRole("button", { name: "Load older messages" })).toBeVisible();
    // Scrolling to the top fetches the previous page by itself, keeping the view steady.
    for (const oldest of ["line 6", "line 1"]) {
      await reader.locator(".scroller").evaluate((el) => (el.scrollTop = 0));
      await expect(messages(reader).getByText(oldest, { exact: true })).toHaveCount(1);
    }
    await expect(reader.getByRole("button", { name: "Load older messages" })).toHaveCount(0);
    await expectExactlyOnceInOrder(reader, Array.from({ length: 25 }, (_, i) => `line ${i + 1}`));
  } finally {
    await server.stop();
  }
});
