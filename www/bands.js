// Amateur bands by frequency: the IARU Region 1 and 2 allocations (Europe,
// Africa, the Americas), 160 m to 70 cm, widened to the union of both
// regions so a station in either sees its band named. A frequency outside
// every band is named as such, not guessed.
const BANDS = [
  ['160 m', 1_800_000, 2_000_000],
  ['80 m', 3_500_000, 4_000_000],
  ['60 m', 5_250_000, 5_450_000],
  ['40 m', 7_000_000, 7_300_000],
  ['30 m', 10_100_000, 10_150_000],
  ['20 m', 14_000_000, 14_350_000],
  ['17 m', 18_068_000, 18_168_000],
  ['15 m', 21_000_000, 21_450_000],
  ['12 m', 24_890_000, 24_990_000],
  ['10 m', 28_000_000, 29_700_000],
  ['6 m', 50_000_000, 54_000_000],
  ['4 m', 70_000_000, 70_500_000],
  ['2 m', 144_000_000, 148_000_000],
  ['1.25 m', 222_000_000, 225_000_000],
  ['70 cm', 420_000_000, 450_000_000],
];

/** The band name for a frequency in Hz, or null outside the amateur bands. */
export function bandOf(hz) {
  const band = BANDS.find(([, lo, hi]) => hz >= lo && hz <= hi);
  return band ? band[0] : null;
}
