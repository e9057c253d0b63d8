// The common end of the check scripts: run the scenario named on the command line and print its
// result as one JSON line; a scenario that throws prints {"error": message} (the Python side asserts).
export async function printScenario(scenarios, name) {
  let out;
  try {
    out = await scenarios[name]();
  } catch (err) {
    out = { error: String(err?.message ?? err) };
  }
  console.log(JSON.stringify(out));
}
