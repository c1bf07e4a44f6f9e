import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, messages, openChat, people, say } from "./helpers";

let server: Hubbub;
test.beforeAll(async () => {
  // Shorter than the default 5 s, still above the page's 2 s typing interval.
  server = await Hubbub.start({ HUBBUB_TYPING_TIMEOUT_MS: "3000" });
});
test.afterAll(async () => {
  await server.stop();
});

const rooms = (page: Page) => page.getByRole("navigation", { name: "Rooms" });

/** Pretends the tab went to the background (or came back), as the Page Visibility API says. */
async function setHidden(page: Page, hidden: boolean) {
  await page.evaluate((hidden) => {
    Object.defineProperty(document, "hidden", { value: hidden, configurable: true });
    Object.defineProperty(document, "visibilityState", {
      value: hidden ? "hidden" : "visible",
      configurable: true,
    });
    document.dispatchEvent(new Event("visibilitychange"));
  }, hidden);
}

test("three people in two rooms: each room keeps to itself, the room list shows both", async ({ browser }) => {
  const [alice, bob, carol] = await people(browser, server.url, "alice", "bob", "carol");

  // Carol opens a new room by name; a bad name is explained first.
  await carol.getByLabel("Open or create a room").fill("Book Club!");
  await carol.getByRole("button", { name: "Open" }).click();
  await expect(carol.getByText(/Room names are 1 to 32/)).toBeVisible();
  await carol.getByLabel("Open or create a room").fill("book-club");
  await carol.getByRole("button", { name: "Open" }).click();
  await expect(carol).toHaveURL(/\/r\/book-club$/);
  await expect(carol.getByRole("status")).toHaveText("Connected"); // rejoined by itself
  await expect(rooms(carol).getByRole("link", { name: "#book-club" })).toHaveAttribute("aria-current", "page");

  await say(carol, "only for the book club");
  await say(alice, "only for general");
  await expect(messages(bob).getByText("only for general")).toBeVisible();
  await expect(messages(carol).getByText("only for the book club")).toBeVisible();
  await expect(messages(carol).getByText("only for general")).toHaveCount(0);
  await expect(messages(bob).getByText("only for the book club")).toHaveCount(0);

  // Freshly loaded, the list has both rooms with people in them.
  await bob.reload();
  await expect(rooms(bob).getByRole("link", { name: "#book-club" })).toBeVisible();
  await expect(rooms(bob).getByRole("link", { name: "#general" })).toBeVisible();
  await carol.close();
});

test("the typing indicator appears and goes away", async ({ browser }) => {
  const alice = await openChat(browser, server.url);
  const dan = await openChat(browser, server.url);
  await join(alice, "alice2");
  await join(dan, "dan");
  await dan.getByRole("textbox", { name: "Message" }).pressSequentially("thinking about it");
  await expect(alice.getByText("dan is typing…")).toBeVisible();
  // Stopped typing: the server ends it by itself.
  await expect(alice.getByText("dan is typing…")).toHaveCount(0, { timeout: 8_000 });
  // Sending ends it at once.
  await dan.getByRole("textbox", { name: "Message" }).pressSequentially(" and done");
  await expect(alice.getByText("dan is typing…")).toBeVisible();
  await dan.keyboard.press("Enter");
  await expect(messages(alice).getByText("thinking about it and done")).toBeVisible();
  await expect(alice.getByText("dan is typing…")).toHaveCount(0);
});

test("hidden tab: unread count in the title; mentions stand out", async ({ browser }) => {
  const erin = await openChat(browser, server.url);
  const fay = await openChat(browser, server.url);
  await join(erin, "erin");
  await join(fay, "fay");
  await expect(erin).toHaveTitle("#general · hubbub");
  await setHidden(erin, true);
  await say(fay, "are you there?");
  await say(fay, "@erin look at this");
  await expect(erin).toHaveTitle("(2) #general · hubbub");
  const mention = messages(erin).getByRole("listitem").filter({ hasText: "look at this" });
  await expect(mention).toHaveClass(/mentions-me/);
  await expect(mention.getByText("@erin")).toHaveClass(/mention/);
  await setHidden(erin, false);
  await expect(erin).toHaveTitle("#general · hubbub");
});

test("everything works from the keyboard alone", async ({ browser }) => {
  const page = await openChat(browser, server.url);
  // The email field has the focus on arrival.
  await expect(page.getByLabel("Email")).toBeFocused();
  await page.keyboard.type("gus@example.com");
  await page.keyboard.press("Tab");
  await page.keyboard.type("gus");
  await page.keyboard.press("Enter");
  // Joined: the focus moves to the message box.
  await expect(page.getByRole("textbox", { name: "Message" })).toBeFocused();
  await page.keyboard.type("typed with Enter");
  await page.keyboard.press("Enter");
  await expect(messages(page).getByText("typed with Enter")).toBeVisible();
  await page.keyboard.type("sent with the button");
  await page.keyboard.press("Tab");
  await expect(page.getByRole("button", { name: "Send" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(messages(page).getByText("sent with the button")).toBeVisible();
});

test("mentions and private messages raise a desktop notification once allowed", async ({ browser }) => {
  const context = await browser.newContext();
  // A stand-in for the browser's Notification: permission already granted, calls recorded.
  await context.addInitScript(() => {
    const shown: { title: string; body: string }[] = [];
    (window as any).shownNotifications = shown;
    (window as any).Notification = class {
      static permission = "granted";
      static requestPermission() {
        return Promise.resolve("granted");
      }
      constructor(title: string, options?: { body?: string }) {
        shown.push({ title, body: options?.body ?? "" });
      }
    };
  });
  const hana = await context.newPage();
  await hana.goto(server.url);
  const ivan = await openChat(browser, server.url);
  await join(hana, "hana");
  await join(ivan, "ivan");
  await setHidden(hana, true);
  await say(ivan, "nothing for hana here");
  await say(ivan, "@hana :wave:");
  await say(ivan, "/msg hana just you");
  await expect(messages(hana).getByText("just you")).toBeVisible();
  const shown = await hana.evaluate(() => (window as any).shownNotifications);
  expect(shown).toEqual([
    { title: "ivan mentioned you", body: "@hana 👋" },
    { title: "ivan (private)", body: "just you" },
  ]);
});

test("the logo goes back to #general, and the chat still works there", async ({ browser }) => {
  const [delia] = await people(browser, server.url, "delia");
  const errors: string[] = [];
  delia.on("pageerror", (e) => errors.push(e.message));
  await delia.getByLabel("Open or create a room").fill("cafe");
  await delia.getByRole("button", { name: "Open" }).click();
  await expect(delia).toHaveURL(/\/r\/cafe$/);
  await expect(delia.getByRole("status")).toHaveText("Connected");
  const gwen = await openChat(browser, `${server.url}/r/cafe`);
  await join(gwen, "gwen");

  await delia.getByRole("link", { name: "hubbub", exact: true }).click();
  await expect(delia).toHaveURL(`${server.url}/`);
  await expect(delia.getByRole("status")).toHaveText("Connected");
  // Frames from the room left behind must not reach what the page drew for it.
  await say(gwen, "still in the cafe");
  await say(delia, "back in general");
  await expect(messages(delia).getByText("back in general")).toBeVisible();
  await expect(messages(delia).getByText("still in the cafe")).toHaveCount(0);
  await say(delia, "and still working");
  await expect(messages(delia).getByText("and still working")).toBeVisible();
  expect(errors).toEqual([]);
});
