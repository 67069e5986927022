//! Short wasm import and export names, and the JS glue rewritten to match.
//!
//! wasm-bindgen names every import `__wbg_<method>_<16 hex digits>` and the
//! closure adapters `wasm_bindgen__convert__closures_____invoke__h<hash>`:
//! about 140 names that are written twice (in the module and in the glue) and
//! that gzip cannot shrink, because the hashes are random. binaryen's
//! `--minify-imports-and-exports-and-modules` renames them to one or two
//! letters (and the import module to `a`) and prints what it did; this module
//! applies the same renaming to the glue and its type declarations. Measured
//! in docs/BENCHMARKS.md ("Browser client size").

use anyhow::{bail, Context, Result};

/// The module name binaryen gives every import after minifying.
const MODULE: &str = "a";

/// Old name → new name, as binaryen printed them.
pub struct Renames {
    imports: Vec<(String, String)>,
    exports: Vec<(String, String)>,
}

impl Renames {
    /// Reads binaryen's report: `{"imports": [[module, old, new], ...],
    /// "exports": [[old, new], ...]}`.
    pub fn parse(report: &str) -> Result<Renames> {
        let json: serde_json::Value =
            serde_json::from_str(report).context("wasm-opt's renaming report is not JSON")?;
        let pairs = |key: &str, width: usize| -> Result<Vec<(String, String)>> {
            let rows = json[key]
                .as_array()
                .with_context(|| format!("wasm-opt's report has no `{key}` list"))?;
            rows.iter()
                .map(|row| {
                    let cells: Vec<&str> = row
                        .as_array()
                        .map(|cells| cells.iter().filter_map(|c| c.as_str()).collect())
                        .unwrap_or_default();
                    if cells.len() != width {
                        bail!("unexpected row in wasm-opt's `{key}` report: {row}");
                    }
                    Ok((cells[width - 2].to_owned(), cells[width - 1].to_owned()))
                })
                .collect()
        };
        Ok(Renames {
            imports: pairs("imports", 3)?,
            exports: pairs("exports", 2)?,
        })
    }

    /// The glue as wasm-bindgen wrote it (before terser): import functions
    /// are keys of one object (`name: function`), handed over under the
    /// module key `"./<out-name>_bg.js"`, and exports are read as `wasm.name`.
    pub fn glue(&self, js: &str, out_name: &str) -> Result<String> {
        let module_key = format!("\"./{out_name}_bg.js\":");
        if js.matches(&module_key).count() != 1 {
            bail!("the glue does not hand over its imports as {module_key} once");
        }
        let mut js = js.replace(&module_key, &format!("\"{MODULE}\":"));
        for (old, new) in &self.imports {
            let (renamed, found) = rename(&js, "", old, ":", new);
            if found == 0 {
                bail!("import `{old}` not found in the glue: wasm-bindgen's output changed; update xtask/src/names.rs");
            }
            js = renamed;
        }
        // Not every export is called from the glue (`__abort_handler` is not).
        for (old, new) in &self.exports {
            js = rename(&js, "wasm.", old, "", new).0;
        }
        Ok(js)
    }

    /// The type declarations of the raw exports (`readonly name:` in the
    /// glue's `.d.ts`, `export const name:` in the module's).
    pub fn declarations(&self, dts: &str, before: &str) -> String {
        let mut dts = dts.to_owned();
        for (old, new) in &self.exports {
            dts = rename(&dts, before, old, ":", new).0;
        }
        dts
    }
}

/// Replaces every `before old after` where `old` is a whole identifier (not
/// part of a longer one), and says how many it replaced.
fn rename(text: &str, before: &str, old: &str, after: &str, new: &str) -> (String, usize) {
    let pattern = format!("{before}{old}{after}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = 0;
    while let Some(at) = rest.find(&pattern) {
        let end = at + pattern.len();
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| before.is_empty() && is_ident(c));
        let followed = after.is_empty() && rest[end..].chars().next().is_some_and(is_ident);
        out.push_str(&rest[..at]);
        if preceded || followed {
            out.push_str(&pattern);
        } else {
            out.push_str(&format!("{before}{new}{after}"));
            found += 1;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, found)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_imports_exports_and_the_module_key() {
        let renames = Renames::parse(
            r#"{"imports": [["./x_bg.js", "__wbg_call_12", "a"]],
                "exports": [["memory", "b"], ["link_on", "c"]]}"#,
        )
        .unwrap();
        let js = "const i = { __wbg_call_12: function() {} };\n\
                  return { \"./x_bg.js\": i };\n\
                  wasm.memory.buffer; wasm.link_on(1); wasm.link_once(2); wasm.memory;";
        assert_eq!(
            renames.glue(js, "x").unwrap(),
            "const i = { a: function() {} };\n\
             return { \"a\": i };\n\
             wasm.b.buffer; wasm.c(1); wasm.link_once(2); wasm.b;"
        );
        assert_eq!(
            renames.declarations("readonly memory: M;\nreadonly link_on: F;", "readonly "),
            "readonly b: M;\nreadonly c: F;"
        );
    }

    #[test]
    fn a_name_missing_from_the_glue_is_an_error() {
        let renames =
            Renames::parse(r#"{"imports": [["./x_bg.js", "gone", "a"]], "exports": []}"#).unwrap();
        assert!(renames.glue("return { \"./x_bg.js\": i };", "x").is_err());
        assert!(renames.glue("return { gone: i };", "x").is_err());
        assert!(Renames::parse("not json").is_err());
        assert!(Renames::parse(r#"{"imports": [["x"]], "exports": []}"#).is_err());
    }
}
