import { expect, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, md5, messages, online, openChat, say } from "./helpers";

let server: Hubbub;
test.beforeAll(async () => {
  server = await Hubbub.start();
});
test.afterAll(async () => {
  await server.stop();
});

test("two people join and chat both ways, with emoji", async ({ browser }) => {
  const alice = await openChat(browser, server.url);
  const bob = await openChat(browser, server.url);
  await join(alice, "alice");
  await join(bob, "bob");

  await say(alice, "hello from alice :robot:"); // Enter sends
  await expect(messages(bob).getByText("hello from alice 🤖")).toBeVisible();
  await expect(messages(alice).getByText("hello from alice 🤖")).toBeVisible();

  await bob.getByRole("textbox", { name: "Message" }).fill("hi alice :tada:");
  await bob.getByRole("button", { name: "Send" }).click(); // and so does the button
  await expect(messages(alice).getByText("hi alice 🎉")).toBeVisible();
  // Each message shows who sent it.
  const item = messages(alice).getByRole("listitem").filter({ hasText: "hi alice 🎉" });
  await expect(item).toContainText("bob");
  await expect(item.locator("time")).toHaveText(/^\d\d:\d\d$/);
});

test("a slow page load never loses the join: the form works before the script arrives", async ({
  browser,
}) => {
  // The script (WASM) arrives late, as on a slow link or a busy machine: held back here until
  // the form has been used. The server's HTML form signs up on its own and comes back to the
  // page, which joins by itself once the script runs.
  const slow = async () => {
    const context = await browser.newContext();
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    await context.route("**/*.wasm", async (route) => {
      await released;
      await route.continue();
    });
    const page = await context.newPage();
    // Not "load": the page preloads the WASM, so its load event waits for it.
    await page.goto(server.url, { waitUntil: "domcontentloaded" });
    return { context, page, release };
  };
  const first = await slow();
  await expect(first.page.getByText("Getting the chat ready")).toBeVisible();
  await expect(first.page.getByRole("textbox", { name: "Open or create a room" })).toBeDisabled();
  await first.page.getByLabel("Email").fill("slowpoke@example.com");
  await first.page.getByLabel("Username").fill("slowpoke");
  await first.page.getByRole("button", { name: "Join chat" }).click();
  // Back to the page (Leptos leaves an empty query: `/?`).
  await first.page.waitForURL(/\/\?$/, { waitUntil: "domcontentloaded" });
  first.release();
  await expect(first.page.getByRole("textbox", { name: "Message" })).toBeVisible();
  await say(first.page, "made it");
  await expect(messages(first.page).getByText("made it")).toBeVisible();
  await first.context.close();

  // Typed before the script, submitted after it has run: nothing typed is lost.
  const second = await slow();
  await second.page.getByLabel("Email").fill("patient@example.com");
  await second.page.getByLabel("Username").fill("patient");
  second.release();
  await expect(second.page.getByText("Getting the chat ready")).toBeHidden();
  await second.page.getByRole("button", { name: "Join chat" }).click();
  await expect(second.page.getByRole("textbox", { name: "Message" })).toBeVisible();
  await expect(online(second.page).getByText("patient")).toBeVisible();
  await second.context.close();
});

test("the join form explains what is wrong, inline", async ({ browser }) => {
  const page = await openChat(browser, server.url);
  let dialogs = 0;
  page.on("dialog", () => dialogs++);
  await page.getByRole("button", { name: "Join chat" }).click();
  await expect(page.getByText("Enter your email address.")).toBeVisible();
  await expect(page.getByText("Choose a username.")).toBeVisible();
  await expect(page.getByLabel("Email")).toHaveAttribute("aria-invalid", "true");

  await page.getByLabel("Email").fill("not-an-email");
  await page.getByLabel("Username").fill("x".repeat(33));
  await page.getByRole("button", { name: "Join chat" }).click();
  await expect(page.getByText("Enter an email like name@example.com.")).toBeVisible();
  await expect(page.getByText("Usernames are at most 32 characters.")).toBeVisible();

  // The server's verdict (the name has an account) shows under the field too.
  const first = await openChat(browser, server.url);
  await join(first, "Carol");
  await page.getByLabel("Email").fill("other-carol@example.com");
  await page.getByLabel("Username").fill("carol");
  await page.getByRole("button", { name: "Join chat" }).click();
  await expect(page.getByText(/belongs to an account/)).toBeVisible();
  await expect(page.getByRole("textbox", { name: "Message" })).toHaveCount(0);
  expect(dialogs).toBe(0);
});

test("avatars use the Gravatar hash and fall back to initials offline", async ({ browser }) => {
  const page = await openChat(browser, server.url);
  await join(page, "Dora Explorer", "  Dora@Example.com ");
  await say(page, "look at my avatar");
  const item = messages(page).getByRole("listitem").filter({ hasText: "look at my avatar" });
  const img = item.locator(".avatar img");
  await expect(img).toHaveAttribute("src", new RegExp(md5("dora@example.com")));
  // No internet here: the image fails, and the initials badge shows instead of a broken image.
  await expect(img).toBeHidden();
  await expect(item.locator(".avatar .initials")).toHaveText("DE");
  await expect(item.locator(".avatar .initials")).toBeVisible();
});

test("user text is shown as text, never run as HTML", async ({ browser }) => {
  const alice = await openChat(browser, server.url);
  const bob = await openChat(browser, server.url);
  let dialogs = 0;
  bob.on("dialog", () => dialogs++);
  await join(alice, "mallory");
  await join(bob, "victim");
  const hostile = "<img src=x onerror=alert(1)><b>bold?</b>";
  await say(alice, hostile);
  await expect(messages(bob).getByText(hostile)).toBeVisible();
  await expect(messages(bob).locator("b")).toHaveCount(0);
  expect(dialogs).toBe(0);
});

test("joins and leaves are announced and the online list follows", async ({ browser }) => {
  const local = await Hubbub.start(); // an empty room
  try {
    const alice = await openChat(browser, local.url);
    await join(alice, "alice");
    await expect(alice.getByTestId("online-count")).toHaveText("1");
    const bob = await openChat(browser, local.url);
    await join(bob, "bob");
    await expect(messages(alice).getByText("bob joined")).toBeVisible();
    await expect(alice.getByTestId("online-count")).toHaveText("2");
    await expect(online(alice).getByText("bob")).toBeVisible();
    await expect(online(bob).getByText("alice")).toBeVisible();
    await bob.context().close();
    await expect(messages(alice).getByText("bob left")).toBeVisible();
    await expect(alice.getByTestId("online-count")).toHaveText("1");
    await expect(online(alice).getByText("bob")).toHaveCount(0);
  } finally {
    await local.stop();
  }
});

test("the list follows new messages unless the reader scrolled up", async ({ browser }) => {
  const local = await Hubbub.start();
  try {
    const reader = await openChat(browser, local.url);
    const writer = await openChat(browser, local.url);
    await reader.setViewportSize({ width: 800, height: 500 });
    await join(reader, "reader");
    await join(writer, "writer");
    for (let i = 1; i <= 30; i++) await say(writer, `line ${i}`);
    const last = messages(reader).getByText("line 30", { exact: true });
    await expect(last).toBeInViewport();

    // Scrolled up: not yanked down; a "new messages" control appears instead.
    await reader.locator(".scroller").evaluate((el) => (el.scrollTop = 0));
    await expect(messages(reader).getByText("line 1", { exact: true })).toBeInViewport();
    await say(writer, "line 31");
    const jump = reader.getByRole("button", { name: /1 new message/ });
    await expect(jump).toBeVisible();
    await expect(messages(reader).getByText("line 1", { exact: true })).toBeInViewport();
    await jump.click();
    await expect(messages(reader).getByText("line 31", { exact: true })).toBeInViewport();
    await expect(jump).toHaveCount(0);
  } finally {
    await local.stop();
  }
});

test("works on a phone-sized screen", async ({ browser }) => {
  const context = await browser.newContext({ viewport: { width: 375, height: 700 }, isMobile: true });
  const page = await context.newPage();
  await page.goto(server.url);
  await join(page, "phone");
  await say(page, "from my phone");
  await expect(messages(page).getByText("from my phone")).toBeInViewport();
  await expect(page.getByRole("button", { name: "Send" })).toBeInViewport();
  // Nothing wider than the screen.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
});

test("the browser and the server compress long messages both ways, and they read the same", async ({
  browser,
}) => {
  // Chromium offers permessage-deflate; what the server answered shows in the DevTools
  // protocol's view of the handshake.
  const context = await browser.newContext();
  const alice = await context.newPage();
  const cdp = await context.newCDPSession(alice);
  await cdp.send("Network.enable");
  const extensions: string[] = [];
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    for (const [name, value] of Object.entries(e.response.headers)) {
      if (name.toLowerCase() === "sec-websocket-extensions") extensions.push(String(value));
    }
  });
  await alice.goto(server.url);
  await join(alice, "zipper");
  const bob = await openChat(browser, server.url);
  await join(bob, "unzipper");
  expect(extensions.join(", ")).toContain("permessage-deflate");

  // Long enough to travel compressed (256 bytes and more) from alice's browser to the server
  // and from the server to both browsers.
  const long = "Ünïcödé ✓ the deploy is green again after we rolled back that migration. "
    .repeat(12)
    .trim();
  await say(alice, long);
  await expect(messages(bob).getByText(long)).toBeVisible();
  await expect(messages(alice).getByText(long)).toBeVisible();
  await say(bob, "short and plain");
  await expect(messages(alice).getByText("short and plain")).toBeVisible();
});
