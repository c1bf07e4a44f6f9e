import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { fillRoom, join, messages, openChat, people, say } from "./helpers";

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

  // Every room: a hit elsewhere opens that room at the message.
  const [elsewhere] = await people(browser, `${server.url}/r/search-elsewhere`, "sal");
  await say(elsewhere, "Sleepy kittens in the other room");
  await bob.getByRole("searchbox", { name: "Search messages" }).fill("kittens");
  await bob.getByRole("checkbox", { name: "All rooms" }).check();
  await bob.getByRole("button", { name: "Search", exact: true }).click();
  await expect(results.getByRole("heading")).toHaveText("2 messages found for “kittens”");
  await results.getByRole("button", { name: "Show the message by sal in #search-elsewhere" }).click();
  await expect(bob).toHaveURL(/\/r\/search-elsewhere\?message=\d+$/);
  await expect(messages(bob).locator(".text").filter({ hasText: "Sleepy kittens" })).toBeInViewport();
});

/** A PNG of `width` × `height` pixels (made here: zlib and CRC-32 are in Node). */
function png(width: number, height: number): Buffer {
  const zlib = require("node:zlib");
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(zlib.crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set([x * 4, y * 4, 160], y * (width * 3 + 1) + 1 + x * 3);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

test("pictures and files: attached by button, paste or drop, with progress and cancel", async ({ browser }) => {
  const room = `${server.url}/r/files`;
  const [alice, bob] = await people(browser, room, "pia", "paul");
  // The button (a labelled file input).
  await alice.getByLabel("Attach a file").setInputFiles({ name: "sunset 🌅.png", mimeType: "image/png", buffer: png(640, 480) });
  await expect(alice.getByRole("status").filter({ hasText: "sunset 🌅.png" })).toContainText("ready to send");
  await say(alice, "look");
  const picture = messages(bob).getByRole("img", { name: "sunset 🌅.png" });
  await expect(picture).toBeVisible();
  await expect.poll(() => picture.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(320);
  // The thumbnail opens the full picture, for people in the room.
  const link = messages(bob).getByRole("link", { name: /sunset 🌅\.png .*open the full picture/ });
  const full = await bob.context().request.get(server.url + (await link.getAttribute("href")));
  expect(full.status()).toBe(200);
  expect(full.headers()["content-type"]).toBe("image/png");
  expect((await full.body()).length).toBe(png(640, 480).length);

  // Pasted into the message box.
  const box = bob.getByRole("textbox", { name: "Message" });
  await box.evaluate((el, bytes) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], "pasted.png", { type: "image/png" }));
    el.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }, [...png(30, 20)]);
  await expect(bob.getByRole("status").filter({ hasText: "pasted.png" })).toContainText("ready to send");
  await box.press("Enter");
  await expect(messages(alice).getByRole("img", { name: "pasted.png" })).toBeVisible();

  // Dropped on the conversation: any file, shown with its name and size.
  await alice.getByRole("region", { name: "Conversation" }).evaluate((el) => {
    const data = new DataTransfer();
    data.items.add(new File(["the minutes\n"], "minutes.txt", { type: "text/plain" }));
    el.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  await expect(alice.getByRole("status").filter({ hasText: "minutes.txt" })).toContainText("ready to send");
  await alice.getByRole("button", { name: "Send" }).click();
  const download = messages(bob).getByRole("link", { name: "minutes.txt" });
  await expect(download).toHaveAttribute("download", "minutes.txt");
  await expect(messages(bob)).toContainText("(12 bytes)");

  // A slow upload shows its progress and can be cancelled: nothing is sent.
  const cdp = await alice.context().newCDPSession(alice);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 64 * 1024,
  });
  await alice.getByLabel("Attach a file").setInputFiles({ name: "big.pdf", mimeType: "application/pdf", buffer: Buffer.alloc(2 * 1024 * 1024) });
  await expect(alice.getByRole("progressbar", { name: "Uploading big.pdf" })).toBeVisible();
  await alice.getByRole("button", { name: "Cancel upload" }).click();
  await expect(alice.getByRole("status").filter({ hasText: "big.pdf" })).toHaveCount(0);
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  // A file of a type that is not allowed is refused with the reason.
  await alice.getByLabel("Attach a file").setInputFiles({ name: "page.html", mimeType: "text/html", buffer: Buffer.from("<script>alert(1)</script>") });
  await expect(alice.getByRole("status").filter({ hasText: "page.html" })).toContainText("cannot be sent");
  await alice.getByRole("button", { name: "Remove file" }).click();
  await expect(messages(bob)).not.toContainText("big.pdf");
});

test("the first link of a message gets a preview card, for both people", async ({ browser }) => {
  // A site of our own, the only private address this server may fetch from.
  const http = require("node:http");
  const site = http.createServer((req: any, res: any) => {
    if (req.url === "/story") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<html><head><title>x</title><meta property="og:title" content="Cats &amp; dogs agree">
        <meta property="og:description" content="A rare accord."><meta property="og:image" content="/cat.png">
        <meta property="og:site_name" content="The Daily Paw"></head></html>`);
    } else if (req.url === "/cat.png") {
      res.writeHead(200, { "content-type": "image/png" });
      res.end(png(200, 100));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
  const port = site.address().port;
  const local = await Hubbub.start({ HUBBUB_LINK_PREVIEWS_ALLOW: `127.0.0.1:${port}` });
  try {
    const [alice, bob] = await people(browser, `${local.url}/r/links`, "lena", "leo");
    await say(alice, `have you seen http://127.0.0.1:${port}/story ?`);
    for (const page of [alice, bob]) {
      const card = messages(page).getByRole("complementary", { name: "Preview of The Daily Paw" });
      await expect(card.getByRole("link", { name: "Cats & dogs agree" })).toHaveAttribute("href", `http://127.0.0.1:${port}/story`);
      await expect(card).toContainText("A rare accord.");
      await expect.poll(() => card.locator("img").evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(200);
    }
    // Still there after a reload (it is on the message in history).
    await bob.reload();
    await expect(messages(bob).getByRole("complementary", { name: "Preview of The Daily Paw" })).toBeVisible();
  } finally {
    await local.stop();
    site.close();
  }
});

test("a link to a message far back says so, instead of loading the whole room", async ({ browser }) => {
  // Pages of 5: twenty of them (the most a link makes the page load) reach 100 messages back.
  const local = await Hubbub.start({ HUBBUB_HISTORY_LIMIT: "5" });
  try {
    const [ozzy] = await people(browser, `${local.url}/r/deep`, "ozzy");
    await say(ozzy, "the very first"); // id 1: the first message on this server
    await expect(messages(ozzy).getByText("the very first")).toBeVisible();
    await fillRoom(browser, local.url, "deep", 130); // ids 2 to 131
    const rita = await openChat(browser, `${local.url}/r/deep?message=1`);
    await join(rita, "rita");
    await expect(rita.getByRole("alert")).toContainText("too far back to bring into view");
    await expect(messages(rita).getByText("the very first")).toHaveCount(0);
    // One near enough is brought into view (30 back: 6 pages).
    await rita.goto(`${local.url}/r/deep?message=101`);
    await expect(messages(rita).locator(".text").filter({ hasText: /^old line 100 / })).toBeInViewport();
  } finally {
    await local.stop();
  }
});
