import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, messages, online, openChat, say } from "./helpers";

const openAccountMenu = async (page: Page) => {
  await page.locator("summary", { hasText: "Account" }).click();
};

test("an account: nobody else gets the name, a password signs in elsewhere, sign out everywhere", async ({
  browser,
}) => {
  const local = await Hubbub.start();
  try {
    const alice = await openChat(browser, local.url);
    await join(alice, "alice");
    const bob = await openChat(browser, local.url);
    await join(bob, "bob");

    // Another browser cannot become alice by typing her name and email.
    const mallory = await openChat(browser, local.url);
    await mallory.getByLabel("Email").fill("alice@example.com");
    await mallory.getByLabel("Username").fill("Alice");
    await mallory.getByRole("button", { name: "Join chat" }).click();
    await expect(mallory.getByText(/belongs to an account/)).toBeVisible();
    await expect(mallory.getByRole("textbox", { name: "Message" })).toHaveCount(0);

    // Alice sets a password from the account menu.
    await openAccountMenu(alice);
    await expect(alice.getByText(/lives only in this browser/)).toBeVisible();
    await alice.getByLabel("Password", { exact: true }).fill("a long enough secret ✓");
    await alice.getByRole("button", { name: "Set password" }).click();
    await expect(alice.getByText(/Password saved/)).toBeVisible();

    // In a second browser she signs in with it and writes to bob privately.
    const second = await openChat(browser, local.url);
    await second.getByText("Have a password? Sign in").click();
    await second.getByLabel("Account name").fill("alice");
    await second.getByLabel("Password").fill("a long enough secret ✓");
    await second.getByRole("button", { name: "Sign in" }).click();
    await expect(second.getByRole("textbox", { name: "Message" })).toBeVisible();
    await say(second, "/msg bob only for you");
    const item = messages(bob).getByRole("listitem").filter({ hasText: "only for you" });
    await expect(item).toContainText("private, to bob");
    await expect(item).toContainText("alice");
    await expect(messages(mallory).getByText("only for you")).toHaveCount(0);

    // She signs out of every browser: this one shows the join form again, and the first
    // one, reloaded, is no longer signed in.
    await openAccountMenu(second);
    await second.getByRole("button", { name: "Sign out of every browser" }).click();
    await expect(second.getByRole("button", { name: "Join chat" })).toBeVisible();
    await expect(second.getByRole("textbox", { name: "Message" })).toHaveCount(0);
    await alice.reload();
    await expect(alice.getByText(/belongs to an account/)).toBeVisible();
    await expect(alice.getByRole("textbox", { name: "Message" })).toHaveCount(0);
  } finally {
    await local.stop();
  }
});

test("an admin deletes a message from every browser at once, and bans from the online list", async ({
  browser,
}) => {
  const local = await Hubbub.start();
  try {
    const admin = await openChat(browser, local.url);
    await join(admin, "admin"); // the first account of the server
    const alice = await openChat(browser, local.url);
    await join(alice, "alice");
    const bob = await openChat(browser, local.url);
    await join(bob, "bob");
    await say(alice, "something regrettable");
    await say(alice, "something fine");
    for (const page of [admin, bob]) {
      await expect(messages(page).getByText("something fine")).toBeVisible();
    }
    const item = (page: Page) =>
      messages(page).getByRole("listitem").filter({ hasText: "something regrettable" });
    // Not bob's to delete; the admin's.
    await expect(item(bob).getByRole("button", { name: "Delete message" })).toHaveCount(0);
    await item(admin).getByRole("button", { name: "Delete message" }).click();
    for (const page of [admin, alice, bob]) {
      await expect(messages(page).getByText("something regrettable")).toHaveCount(0);
      await expect(messages(page).getByText("This message was deleted.")).toBeVisible();
      await expect(messages(page).getByText("something fine")).toBeVisible();
    }
    // The page the server renders has the tombstone too.
    await bob.reload();
    await expect(messages(bob).getByText("This message was deleted.")).toBeVisible();
    await expect(messages(bob).getByText("something regrettable")).toHaveCount(0);

    // Banning alice from the online list ends her session; the admin log says so.
    await admin.getByRole("button", { name: "Ban alice" }).click();
    await expect(alice.getByText("An admin banned this account.")).toBeVisible();
    await openAccountMenu(admin);
    await admin.getByRole("button", { name: "Show the admin log" }).click();
    const log = admin.getByRole("list", { name: "Admin log" });
    await expect(log).toContainText("admin banned alice");
    await expect(log).toContainText("admin deleted message");
  } finally {
    await local.stop();
  }
});

test("a locked server refuses a sign-up without an invitation and takes one with it", async ({ browser }) => {
  const local = await Hubbub.start();
  try {
    const admin = await openChat(browser, local.url);
    await join(admin, "admin");
    await openAccountMenu(admin);
    await admin.getByRole("button", { name: "Lock sign-ups" }).click();
    await expect(admin.getByText(/Sign-ups are locked/)).toBeVisible();
    await admin.getByRole("button", { name: "Create an invitation link" }).click();
    const link = await admin.getByLabel(/Invitation link/).inputValue();
    expect(link).toContain("/?invite=");

    const stranger = await openChat(browser, local.url);
    await stranger.getByLabel("Email").fill("stranger@example.com");
    await stranger.getByLabel("Username").fill("stranger");
    await stranger.getByRole("button", { name: "Join chat" }).click();
    await expect(stranger.getByText(/need an invitation/)).toBeVisible();
    await expect(stranger.getByRole("textbox", { name: "Message" })).toHaveCount(0);

    const guest = await openChat(browser, link);
    await expect(guest.getByText("You were invited")).toBeVisible();
    await join(guest, "guest");
    await say(guest, "thanks for the invitation");
    await expect(messages(admin).getByText("thanks for the invitation")).toBeVisible();
  } finally {
    await local.stop();
  }
});

test("without JavaScript, signing up and signing in still work, and refusals are explained", async ({
  browser,
}) => {
  const local = await Hubbub.start();
  try {
    const noScript = await browser.newContext({ javaScriptEnabled: false });
    const page = await noScript.newPage();
    await page.goto(local.url);
    await page.getByLabel("Email").fill("nojs@example.com");
    await page.getByLabel("Username").fill("nojs");
    await page.getByRole("button", { name: "Join chat" }).click();
    // Back to the page (Leptos leaves an empty query: `/?`).
    await page.waitForURL(/\/\?$/, { waitUntil: "domcontentloaded" });
    await expect(page.getByRole("button", { name: "Join chat" })).toBeVisible();
    const session = (await noScript.cookies()).find((c) => c.name === "hubbub_session");
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe("Lax");

    // Another browser without the script, the same name: told why, in the page.
    const other = await (await browser.newContext({ javaScriptEnabled: false })).newPage();
    await other.goto(local.url);
    await other.getByLabel("Email").fill("nojs@example.com");
    await other.getByLabel("Username").fill("NoJS");
    await other.getByRole("button", { name: "Join chat" }).click();
    await expect(other.getByText(/belongs to an account/)).toBeVisible();
    // A wrong password too, from the sign-in form.
    await other.getByText("Have a password? Sign in").click();
    await other.getByLabel("Account name").fill("nojs");
    await other.getByLabel("Password").fill("not the password");
    await other.getByRole("button", { name: "Sign in" }).click();
    await expect(other.getByText(/do not match an account/)).toBeVisible();

    // Once the script can run, the signed-in browser joins by itself, as its account.
    const withScript = await browser.newContext({ storageState: await noScript.storageState() });
    const later = await withScript.newPage();
    await later.goto(local.url);
    await expect(later.getByRole("textbox", { name: "Message" })).toBeVisible();
    await expect(online(later).getByText("nojs")).toBeVisible();
  } finally {
    await local.stop();
  }
});
