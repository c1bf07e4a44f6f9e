import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { fillRoom, messages, people, say } from "./helpers";

// Two people, each in a browser of their own, fix, react to, answer, format and find
// messages; everything one does, the other sees live.

let server: Hubbub;

test.beforeAll(async () => {
  server = await Hubbub.start();
});

test.afterAll(async () => {
  await server.stop();
});

/** The message whose text contains `text`, in `page`'s conversation. */
const item = (page: Page, text: string | RegExp) =>
  messages(page).getByRole("listitem").filter({ hasText: text }).last();

test("an author edits (up arrow) and deletes a message; the other person sees both", async ({ browser }) => {
  const room = `${server.url}/r/edits`;
  const [alice, bob] = await people(browser, room, "alice", "bob");
  await say(alice, "helo wrld");
  await expect(item(bob, "helo wrld")).toBeVisible();

  const box = alice.getByRole("textbox", { name: "Message" });
  await box.press("ArrowUp");
  await expect(box).toHaveValue("helo wrld");
  await box.fill("hello **world**");
  await box.press("Enter");
  for (const page of [alice, bob]) {
    const edited = item(page, "hello world");
    await expect(edited).toContainText("(edited)");
    await expect(edited.locator("strong")).toHaveText("world");
  }
  await expect(item(bob, "helo wrld")).toHaveCount(0);
  // Only the author may edit.
  await expect(item(bob, "hello world").getByRole("button", { name: "Edit message" })).toHaveCount(0);

  await item(alice, "hello world").getByRole("button", { name: "Delete message" }).click();
  for (const page of [alice, bob]) {
    await expect(messages(page)).toContainText("This message was deleted.");
    await expect(messages(page)).not.toContainText("hello world");
  }
  // A reload (server-rendered history, then the socket) shows the same.
  await bob.reload();
  await expect(messages(bob)).toContainText("This message was deleted.");
  await expect(messages(bob)).not.toContainText("hello world");
});

test("reactions are counted per emoji, show who, and toggle", async ({ browser }) => {
  const room = `${server.url}/r/reactions`;
  const [alice, bob] = await people(browser, room, "rita", "rob");
  await say(alice, "ship it?");
  await item(bob, "ship it?").getByRole("button", { name: "Add reaction" }).click();
  await bob.getByRole("button", { name: "React with 👍" }).click();
  const thumbs = (page: Page) => item(page, "ship it?").getByRole("button", { name: /^👍/ });
  await expect(thumbs(alice)).toHaveAccessibleName("👍 1: rob");
  await expect(thumbs(alice)).toHaveAttribute("aria-pressed", "false");
  await thumbs(alice).click();
  await expect(thumbs(bob)).toHaveAccessibleName("👍 2: rob, rita");
  await expect(thumbs(alice)).toHaveAttribute("aria-pressed", "true");
  // Any emoji, by its shortcode too.
  await item(alice, "ship it?").getByRole("button", { name: "Add reaction" }).click();
  await alice.getByLabel("Other emoji").fill(":tada:");
  await alice.getByRole("button", { name: "React", exact: true }).click();
  await expect(item(bob, "ship it?").getByRole("button", { name: /^🎉 1/ })).toBeVisible();
  // Bob takes his back.
  await thumbs(bob).click();
  await expect(thumbs(alice)).toHaveAccessibleName("👍 1: rita");
  await bob.reload();
  await expect(thumbs(bob)).toHaveAccessibleName("👍 1: rita");
});

test("a reply quotes what it answers, and the quote brings an old message back into view", async ({ browser }) => {
  const room = `${server.url}/r/replies`;
  const [alice, bob] = await people(browser, room, "quinn", "quentin");
  await say(alice, "Which release has the fix?");
  // Then enough talk that the question is no longer in the first page of history.
  await fillRoom(browser, server.url, "replies", 120);
  await expect(messages(bob)).toContainText("old line 120");
  await item(bob, "Which release").getByRole("button", { name: "Reply" }).click();
  await expect(bob.getByText("Replying to quinn:")).toBeVisible();
  await say(bob, "The next one.");
  const quote = (page: Page) =>
    item(page, "The next one.").getByRole("button", { name: /^In reply to quinn: Which release has the fix\?/ });
  await expect(quote(alice)).toBeVisible();
  await expect(quote(bob)).toBeVisible();

  await alice.reload();
  await expect(quote(alice)).toBeVisible();
  const question = messages(alice).locator(".text").filter({ hasText: "Which release has the fix?" });
  await expect(question).toHaveCount(0);
  await quote(alice).click();
  await expect(question).toBeInViewport();
});

test("formatting is drawn as formatting, and markup stays text", async ({ browser }) => {
  const room = `${server.url}/r/format`;
  const [alice, bob] = await people(browser, room, "fay", "fred");
  const errors: string[] = [];
  bob.on("pageerror", (e) => errors.push(e.message));
  await say(alice, "**bold** _it_ `code` [site](https://example.com/a) [bad](javascript:alert(1)) <img src=x onerror=alert(1)> :tada: @fred");
  const shown = item(bob, "bold");
  await expect(shown.locator("strong")).toHaveText("bold");
  await expect(shown.locator("em")).toHaveText("it");
  await expect(shown.locator("code")).toHaveText("code");
  await expect(shown.getByRole("link", { name: "site" })).toHaveAttribute("href", "https://example.com/a");
  await expect(shown.getByRole("link", { name: "bad" })).toHaveCount(0);
  await expect(shown).toContainText("<img src=x onerror=alert(1)>");
  await expect(shown.locator("img[src=x]")).toHaveCount(0);
  await expect(shown).toContainText("🎉");
  await expect(shown.locator(".mention")).toHaveText("@fred");
  // A code block keeps its lines; Shift+Enter makes them.
  const box = alice.getByRole("textbox", { name: "Message" });
  await box.fill("```");
  await box.press("Shift+Enter");
  await box.pressSequentially("let x = 1;");
  await box.press("Shift+Enter");
  await box.pressSequentially("```");
  await box.press("Enter");
  await expect(messages(bob).locator("pre code").last()).toHaveText("let x = 1;");
  // The server's HTML draws the same.
  await bob.reload();
  await expect(item(bob, "bold").locator("strong")).toHaveText("bold");
  expect(errors).toEqual([]);
});

test("search finds words in their other forms, marks them and shows the message", async ({ browser }) => {
  const room = `${server.url}/r/search`;
  const [alice, bob] = await people(browser, room, "sam", "sue");
  await say(alice, "The kittens are sleeping in the sun");
  await fillRoom(browser, server.url, "search", 120);
  await bob.reload();
  await expect(messages(bob)).toContainText("old line 120");
  await bob.getByRole("searchbox", { name: "Search messages" }).fill("kitten sleep");
  await bob.getByRole("button", { name: "Search", exact: true }).click();
  const results = bob.getByRole("region", { name: "Search results" });
  await expect(results.getByRole("heading")).toHaveText("1 message found for “kitten sleep”");
  await expect(results.locator("mark")).toHaveText(["kittens", "sleeping"]);
  await results.getByRole("button", { name: "Show the message by sam" }).click();
  // Older pages were loaded until it was there, and it is in view.
  await expect(messages(bob).locator(".text").filter({ hasText: "The kittens are sleeping" })).toBeInViewport();
  await bob.getByRole("button", { name: "Close search" }).click();
  await expect(results).toHaveCount(0);
});
