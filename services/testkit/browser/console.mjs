// Drives the gateway's /console in headless Chromium, the microphone faked from a WAV file:
// sign in, add a child, hold the talk button while the file plays, and wait for what Blob heard
// and answered; then reconnect and check the conversation resumes. Prints a JSON summary.
//
//   node console.mjs http://127.0.0.1:PORT /abs/speech.wav /abs/screenshot.png
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [base, wav, screenshot] = process.argv.slice(2);
if (!base || !wav || !screenshot) {
  console.error("usage: node console.mjs BASE_URL WAV SCREENSHOT");
  process.exit(2);
}
// The WAV's length: 16 kHz mono 16-bit, data after a 44-byte header.
const seconds = (readFileSync(wav).length - 44) / 32000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${wav}%noloop`,
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let failed = false;
const page = await (await browser.newContext({ permissions: ["microphone"] })).newPage();
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(String(error)));
const consoleLines = [];
page.on("console", (message) => consoleLines.push(message.type() + ": " + message.text()));
try {
  await page.goto(base + "/console");
  await page.fill("#email", "browser-parent@example.com");
  await page.click("#signin-button");
  await page.waitForSelector("#child:not([hidden])");
  await page.fill("#child-name", "Mia");
  await page.click("#add-child");
  await page.waitForFunction(() => !document.querySelector("#start").disabled);
  await page.click("#start");
  await page.waitForFunction(() => document.querySelector("#socket-state").textContent === "open");
  await page.waitForSelector("#transcript li.note");

  // Press and hold while the file plays (it starts when the microphone opens), then let go.
  const hold = page.locator("#hold");
  await hold.hover();
  await page.mouse.down();
  await page.waitForTimeout(Math.round(seconds * 1000) + 600);
  await page.mouse.up();

  const heard = await page.waitForSelector("#transcript li.child", { timeout: 60000 });
  const reply = await page.waitForSelector("#transcript li.blob[data-done]", { timeout: 60000 });
  const transcript = (await heard.textContent()).trim();
  const answer = (await reply.textContent()).trim();
  const state = (await page.textContent("#state")).trim();

  // Reconnecting resumes the same conversation.
  await page.click("#reconnect");
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#transcript li.note")].some((li) => li.textContent.startsWith("Conversation resumed: 1 exchanges")));
  await page.waitForFunction(() => document.querySelector("#socket-state").textContent === "open");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ transcript, reply: answer, state, pageErrors }));
} catch (error) {
  failed = true;
  console.error(String(error));
  console.error("page text:\n" + (await page.textContent("body").catch(() => "")));
  console.error("events:\n" + (await page.textContent("#log").catch(() => "")));
  console.error("page errors: " + JSON.stringify(pageErrors) + "\nconsole:\n" + consoleLines.join("\n"));
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
