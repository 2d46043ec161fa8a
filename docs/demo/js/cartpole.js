// CartPole-v1 as gymnasium writes it (gymnasium/envs/classic_control/cartpole.py): Euler integration of
// Barto, Sutton & Anderson's cart and pole, terminated when the pole leans more than 12 degrees or the cart
// leaves [-2.4, 2.4], truncated at 500 steps.

export const CARTPOLE = {
  gravity: 9.8, massCart: 1.0, massPole: 0.1, length: 0.5, forceMag: 10.0, tau: 0.02,
  thetaLimit: (12 * 2 * Math.PI) / 360, xLimit: 2.4, maxSteps: 500,
};

// A small seeded generator (mulberry32), so an episode can be replayed from its seed.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class CartPole {
  constructor(seed = 0) {
    this.random = rng(seed);
    this.reset();
  }

  // Every state variable uniform in [-0.05, 0.05], as gymnasium's reset.
  reset() {
    this.state = Array.from({ length: 4 }, () => -0.05 + 0.1 * this.random());
    this.steps = 0;
    this.done = false;
    return this.observation();
  }

  // The observation the policy sees: float32 (x, x_dot, theta, theta_dot).
  observation() {
    return Float32Array.from(this.state);
  }

  // action 0 pushes left, 1 right; returns {observation, reward, terminated, truncated}.
  step(action) {
    if (this.done) throw new Error("cartpole: step() after the episode ended; reset() first");
    if (action !== 0 && action !== 1) throw new Error(`cartpole: action must be 0 or 1, got ${action}`);
    const p = CARTPOLE;
    let [x, xDot, theta, thetaDot] = this.state;
    const force = action === 1 ? p.forceMag : -p.forceMag;
    const cos = Math.cos(theta), sin = Math.sin(theta);
    const totalMass = p.massPole + p.massCart, poleMassLength = p.massPole * p.length;
    const temp = (force + poleMassLength * thetaDot * thetaDot * sin) / totalMass;
    const thetaAcc = (p.gravity * sin - cos * temp) /
      (p.length * (4.0 / 3.0 - (p.massPole * cos * cos) / totalMass));
    const xAcc = temp - (poleMassLength * thetaAcc * cos) / totalMass;
    x += p.tau * xDot;
    xDot += p.tau * xAcc;
    theta += p.tau * thetaDot;
    thetaDot += p.tau * thetaAcc;
    this.state = [x, xDot, theta, thetaDot];
    this.steps += 1;
    const terminated = x < -p.xLimit || x > p.xLimit || theta < -p.thetaLimit || theta > p.thetaLimit;
    const truncated = !terminated && this.steps >= p.maxSteps;
    this.done = terminated || truncated;
    return { observation: this.observation(), reward: 1, terminated, truncated };
  }
}

// The cart, the pole and the track, in the style of gymnasium's rgb_array frames.
export function drawCartPole(ctx, state) {
  const { width, height } = ctx.canvas;
  const scale = width / (2 * CARTPOLE.xLimit);
  const cartY = height * 0.8, cartW = 50, cartH = 30, poleLen = scale * 2 * CARTPOLE.length;
  const cx = state[0] * scale + width / 2;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.strokeStyle = "#000";
  ctx.beginPath();
  ctx.moveTo(0, cartY + cartH / 2);
  ctx.lineTo(width, cartY + cartH / 2);
  ctx.stroke();
  ctx.fillStyle = "#000";
  ctx.fillRect(cx - cartW / 2, cartY - cartH / 2, cartW, cartH);
  ctx.save();
  ctx.translate(cx, cartY - cartH / 4);
  ctx.rotate(state[2]);
  ctx.fillStyle = "#ca9865";
  ctx.fillRect(-5, -poleLen, 10, poleLen);
  ctx.restore();
  ctx.fillStyle = "#8184cb";
  ctx.beginPath();
  ctx.arc(cx, cartY - cartH / 4, 5, 0, 2 * Math.PI);
  ctx.fill();
}
