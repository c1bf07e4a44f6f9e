import AxeBuilder from "@axe-core/playwright";
import { expect, Page, test } from "@playwright/test";
import { Hubbub } from "./server";
import { join, messages, openChat, say } from "./helpers";

/** WCAG 2 A and AA rules (contrast, names, labels, landmarks...), light and dark. */
async function audit(page: Page) {
  const { violations } = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const summary = violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  expect(summary).toEqual([]);
}

test("the join page and the chat pass an automated WCAG 2 AA audit, light and dark", async ({ browser }) => {
  const server = await Hubbub.start();
  try {
    for (const colorScheme of ["light", "dark"] as const) {
      const context = await browser.newContext({ colorScheme });
      const alice = await context.newPage();
      await alice.goto(server.url);
      await audit(alice);
      await alice.getByRole("button", { name: "Join chat" }).click(); // inline errors shown
      await audit(alice);
      const name = `alice-${colorScheme}`;
      await join(alice, name);
      const bob = await openChat(browser, server.url);
      await join(bob, `bob-${colorScheme}`);
      await say(bob, `hello @${name} :wave:`);
      await say(bob, `/msg ${name} private note`);
      await say(alice, "/msg nobody lost");
      await expect(messages(alice).getByText("private note")).toBeVisible();
      await expect(messages(alice).getByText(/is not online/)).toBeVisible();
      await audit(alice);
      await context.close();
    }
  } finally {
    await server.stop();
  }
});
