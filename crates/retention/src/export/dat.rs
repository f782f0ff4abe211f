//! Concordance DAT and Opticon OPT load files, as Relativity, Nuix and
//! other review platforms load them: UTF-8 with a byte-order mark, fields
//! qualified by `þ` (U+00FE, doubled inside a value) and separated by
//! 0x14, a newline inside a value written as `®` (U+00AE), rows ended by
//! CRLF. One row per document: each message, and each attachment as its
//! own document whose `PARENT_DOCID` names its message (a family). The OPT
//! lists image attachments only: `DOCID,VOLUME,PATH,Y,,,1`.

/// The DAT's columns.
pub const FIELDS: [&str; 17] = [
    "DOCID",
    "PARENT_DOCID",
    "ATTACH_DOCIDS",
    "DOC_TYPE",
    "KIND",
    "CONVERSATION",
    "CONVERSATION_KIND",
    "SEQUENCE",
    "MESSAGE_ID",
    "DATE_SENT",
    "FROM",
    "TO",
    "SUBJECT",
    "TEXT",
    "FILE_NAME",
    "SHA256",
    "NATIVE_PATH",
];

const QUALIFIER: char = '\u{FE}';
const SEPARATOR: char = '\u{14}';
const NEWLINE: char = '\u{AE}';

/// The byte-order mark the file starts with.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One row (CRLF-terminated) of already-ordered values.
pub fn row(values: &[String]) -> String {
    let fields: Vec<String> = values
        .iter()
        .map(|v| {
            let clean: String = v
                .replace("\r\n", "\n")
                .chars()
                .filter_map(|c| match c {
                    '\n' | '\r' => Some(NEWLINE),
                    QUALIFIER => Some(QUALIFIER),
                    // The separator and other controls cannot appear in a value.
                    c if c.is_control() && c != '\t' => None,
                    c => Some(c),
                })
                .collect();
            let doubled = clean.replace(QUALIFIER, "\u{FE}\u{FE}");
            format!("{QUALIFIER}{doubled}{QUALIFIER}")
        })
        .collect();
    let mut line = fields.join(&SEPARATOR.to_string());
    line.push_str("\r\n");
    line
}

/// One OPT line for an image document.
pub fn opt_line(doc_id: &str, volume: &str, path: &str) -> String {
    // Commas delimit the OPT: a path with one would shift the columns.
    format!("{doc_id},{volume},{},Y,,,1\r\n", path.replace(',', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_qualified_and_cleaned() {
        let r = row(&["a".into(), "þorn\r\nnext".into(), "x\u{14}y\u{0}".into()]);
        assert_eq!(r, "þaþ\u{14}þþþorn®nextþ\u{14}þxyþ\r\n");
        assert_eq!(opt_line("SR1", "VOL001", "natives/a,b.png"), "SR1,VOL001,natives/a_b.png,Y,,,1\r\n");
    }
}
