"""Just enough of bash's grammar to join continuation lines the way bash's history does.

bash keeps a multi-line command (a backslash continuation, `for … do … done` over several PS2 lines, a
here-document) as ONE history entry, joined by the rules of `bashhist.c: bash_add_history` and
`parse.y: history_delimiting_chars`: a backslash-newline is removed, a here-document keeps its newlines,
an open quote keeps the newline, after `do`/`then`/`{`/`|`/`&&`/… a space, otherwise `; `. This module
tokenizes the lines typed so far (quotes, `$(…)`, reserved words in command position, here-doc
operators) and answers two questions: is the command complete, and how is the next line joined.
It is a model of the common constructs, not a shell: what it cannot follow it reports as complete.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# tokens after which bash joins the next line with a space instead of "; " (parse.y no_semi_successors)
NO_SEMI = {"\n", "{", "(", ")", ";", "&", "|", "case", "do", "else", "if", ";;", ";&", ";;&", "then", "until",
           "while", "&&", "||", "in"}
OPENERS = {"if": "fi", "for": "done", "while": "done", "until": "done", "select": "done", "case": "esac",
           "{": "}"}
# after these reserved words a new command starts (so the next word may be a reserved word)
COMMAND_STARTERS = {"then", "do", "else", "elif", "if", "while", "until", "{", "!", "time"}
OPERATORS = ("&&", "||", ";;&", ";;", ";&", "|&", "<<-", "<<<", "<<", ">>", "<&", ">&", "<>", ">|", "&>>", "&>",
             ";", "&", "|", "(", ")", "<", ">")
_OPERATOR = re.compile("|".join(re.escape(o) for o in OPERATORS))  # longest first, as listed


@dataclass
class Analysis:
    """What the lines so far leave open."""

    complete: bool = True
    backslash: bool = False       # the last line ends with an unquoted backslash
    quote: bool = False           # inside an open quote, `$(…)` or backquote
    heredoc: bool = False         # the next line is a here-document body line
    heredoc_first: bool = False   # … and the first one of that body
    last: str = "\n"              # last token before the newline (as bash's token_before_that)
    before_last: str = "\n"       # the token before that
    in_case: bool = False
    stack: list[str] = field(default_factory=list)


def analyze(lines: list[str]) -> Analysis:
    """Analyse the physical lines typed so far (without their newlines)."""
    result = Analysis()
    stack: list[str] = []
    heredocs: list[tuple[str, bool]] = []  # (delimiter, strip tabs)
    body: list[tuple[str, bool]] = []      # delimiters whose bodies are being read
    body_started = False
    tokens: list[str] = []
    command_position = True
    pending_heredoc_op: str | None = None
    carry = ""  # a line that left a quote open is read again together with the next one
    saved: tuple = ()
    for line in lines:
        if carry:
            line = carry + "\n" + line
            tokens, stack, heredocs, command_position = saved[0][:], saved[1][:], saved[2][:], saved[3]
            carry = ""
        if body:
            delim, strip = body[0]
            candidate = line.lstrip("\t") if strip else line
            body_started = True
            if candidate == delim:
                body.pop(0)
            continue
        saved = (tokens[:], stack[:], heredocs[:], command_position)
        i, n = 0, len(line)
        open_quote = False
        while i < n:
            c = line[i]
            if c in " \t":
                i += 1
                continue
            if c == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
                break  # a comment runs to the end of the line
            m = _OPERATOR.match(line, i) if c in "&|;<>()" else None
            op = m.group(0) if m else None
            if op is not None:
                i += len(op)
                if op in ("<<", "<<-"):
                    pending_heredoc_op = op
                    tokens.append(op)
                    continue
                if op == "(":
                    if stack and stack[-1] == "esac" and not command_position:
                        pass  # optional `(` before a case pattern
                    else:
                        stack.append(")")
                elif op == ")":
                    if stack and stack[-1] == ")":
                        stack.pop()
                    # else: a case pattern's `)`
                tokens.append(op)
                command_position = op in (";", "&", "|", "&&", "||", "(", ")", ";;", ";&", ";;&", "|&")
                continue
            # a word: scan to its end, through quotes and $( … )
            start = i
            depth = 0
            quoted = False
            while i < n:
                c = line[i]
                if c == "\\":
                    if i + 1 >= n:
                        i = n
                        break  # trailing backslash: handled below
                    quoted = True
                    i += 2
                    continue
                if c == "'" or c == '"' or c == "`":
                    quoted = True
                    close = _close_quote(line, i)
                    if close < 0:
                        open_quote = True
                        i = n
                        break
                    i = close + 1
                    continue
                if line.startswith("$(", i):
                    depth += 1
                    i += 2
                    continue
                if c == ")" and depth:
                    depth -= 1
                    i += 1
                    continue
                if depth == 0 and (c in " \t;&|()<>"):
                    break
                i += 1
            if depth:
                open_quote = True
            word = line[start:i]
            if word.endswith("\\") and i >= n and not word.endswith("\\\\"):
                word = word[:-1]
            if pending_heredoc_op is not None:
                heredocs.append((word.replace("'", "").replace('"', "").replace("\\", ""), pending_heredoc_op == "<<-"))
                pending_heredoc_op = None
                tokens.append("WORD")
                command_position = False
                continue
            token = "WORD"
            if command_position and not quoted:
                if word in OPENERS:
                    stack.append(OPENERS[word])
                    token = word
                elif stack and word == stack[-1]:
                    stack.pop()
                    token = word
                elif word in ("then", "do", "else", "elif", "in", "!", "time", "function"):
                    token = word
            elif word == "in" and tokens and len(tokens) >= 2 and tokens[-2] in ("for", "case", "select"):
                token = "in"
            elif word == "esac" and stack and stack[-1] == "esac":
                stack.pop()
                token = word
            tokens.append(token)
            command_position = token in COMMAND_STARTERS or (token == "in" and stack and stack[-1] == "esac")
            if open_quote:
                break
        result.quote = open_quote
        result.backslash = (not open_quote and line.endswith("\\") and not line.endswith("\\\\"))
        if not open_quote and not result.backslash:
            tokens.append("\n")
            command_position = True
            if heredocs:
                body.extend(heredocs)
                heredocs.clear()
                body_started = False
        if open_quote:
            carry = line
    if tokens and tokens[-1] == "\n":
        before = tokens[:-1]
        result.last = before[-1] if before else "\n"
        result.before_last = before[-2] if len(before) > 1 else "\n"
    result.heredoc = bool(body)
    result.heredoc_first = bool(body) and not body_started
    result.stack = stack
    result.in_case = "esac" in stack
    dangling = result.last in ("|", "&&", "||", "|&")
    result.complete = not (result.quote or result.backslash or result.heredoc or stack or dangling)
    return result


def _close_quote(line: str, i: int) -> int:
    """Index of the quote closing the one at i, or -1."""
    q = line[i]
    j = i + 1
    if q == "'" and i > 0 and line[i - 1] == "$":
        while j < len(line):  # $'…' honours backslash escapes
            if line[j] == "\\":
                j += 2
                continue
            if line[j] == q:
                return j
            j += 1
        return -1
    while j < len(line):
        if q != "'" and line[j] == "\\":
            j += 2
            continue
        if line[j] == q:
            return j
        j += 1
    return -1


def join(entry: str, analysis: Analysis, line: str) -> str:
    """Append the next physical line to a history entry the way bash does."""
    if analysis.heredoc:
        return entry + ("\n" if analysis.heredoc_first else "") + line + "\n"
    if analysis.backslash:
        return entry[:-1] + line
    if analysis.quote:
        return entry + "\n" + line
    if not line.strip():
        return entry
    last, before = analysis.last, analysis.before_last
    if last == ")":
        sep = " " if before == "(" or analysis.in_case else "; "
    elif last == "WORD" and before == "function":
        sep = " "
    elif last in NO_SEMI:
        sep = " "
    else:
        sep = "; "
    return entry + sep + line
