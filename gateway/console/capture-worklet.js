// Microphone samples to the page: 16 kHz floats in blocks of 320 (20 ms) once the context runs
// at 16 kHz (the page asks for that rate; the browser resamples the device).
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(320);
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.block[this.filled++] = channel[i];
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block.slice());
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
