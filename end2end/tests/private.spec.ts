import { expect, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, messages, online, openChat, people, say } from "./helpers";

test("a private message is seen by exactly one other person", async ({ browser }) => {
  const server = await Hubbub.start();
  try {
    const [alice, bob, carol] = await people(browser, server.url, "alice", "bob", "carol");

    // From the online list, with the keyboard ready in the message box.
    await expect(online(alice).getByText("bob")).toBeVisible();
    await alice.getByRole("button", { name: "Message bob privately" }).click();
    await expect(alice.getByRole("textbox", { name: "Message" })).toHaveValue("/msg bob ");
    await alice.keyboard.type("just between us");
    await alice.keyboard.press("Enter");
    // And typed as a command.
    await say(alice, "/msg bob second secret");
    await say(alice, "hello everyone");

    for (const page of [alice, bob]) {
      const item = messages(page).getByRole("listitem").filter({ hasText: "just between us" });
      await expect(item).toContainText("private, to bob");
      await expect(messages(page).getByText("second secret")).toBeVisible();
    }
    await expect(messages(carol).getByText("hello everyone")).toBeVisible();
    await expect(messages(carol).getByText("just between us")).toHaveCount(0);
    await expect(messages(carol).getByText("second secret")).toHaveCount(0);

    // Still there for bob after a reload; still absent for carol.
    await bob.reload();
    await expect(messages(bob).getByText("just between us")).toBeVisible();
    await carol.reload();
    await expect(messages(carol).getByText("hello everyone")).toBeVisible();
    await expect(messages(carol).getByText("just between us")).toHaveCount(0);

    // A name with a space, from the envelope button.
    const dora = await openChat(browser, server.url);
    await join(dora, "Dora Explorer", "dora@example.com");
    await expect(online(alice).getByText("Dora Explorer")).toBeVisible();
    await alice.getByRole("button", { name: "Message Dora Explorer privately" }).click();
    await alice.keyboard.type("found you");
    await alice.keyboard.press("Enter");
    await expect(messages(dora).getByText("found you")).toBeVisible();
    await expect(messages(dora).getByRole("listitem").filter({ hasText: "found you" })).toContainText(
      "private, to Dora Explorer",
    );

    // Someone not online: a clear refusal, shown on the message.
    await say(alice, "/msg nobody are you there?");
    const refused = messages(alice).getByRole("listitem").filter({ hasText: "are you there?" });
    await expect(refused).toContainText("is not online in this room");
  } finally {
    await server.stop();
  }
});
