"""A labelled evaluation set for PII scrubbing: support-chat messages with PII and domain tokens.

Every message is built from fragments, so the exact character spans of each PII value (which must
be removed) and each domain token (which must survive verbatim) are known. Styles vary on purpose:
formal tickets, lowercase chat ("hey its mike lol"), agent replies, signatures, Markdown and CSV
tables, bullet lists, key: value dumps; values come from Faker in several locales and in several
surface forms (spaced cards, grouped IBANs, dotted phones, one-line and multi-line addresses).

Example::

    for ex in generate(500, seed=7):
        ex.text, ex.pii, ex.domain      # spans: (start, end, kind)
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

PII_TYPES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
             "STREET_ADDRESS")
DOMAIN_KINDS = ("order", "sku", "version", "error", "price", "plan")
LOCALES = ("en_US", "en_US", "en_US", "en_GB", "en_CA", "en_AU", "en_IE", "es_MX", "de_DE", "fr_FR", "it_IT",
           "en_IN", "nl_NL")


@dataclass
class Example:
    text: str
    pii: list[tuple[int, int, str]] = field(default_factory=list)
    domain: list[tuple[int, int, str]] = field(default_factory=list)


class _Builder:
    def __init__(self):
        self.parts: list[str] = []
        self.length = 0
        self.pii: list[tuple[int, int, str]] = []
        self.domain: list[tuple[int, int, str]] = []

    def add(self, text: str, pii: str | None = None, domain: str | None = None) -> "_Builder":
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        if pii:
            self.pii.append((start, self.length, pii))
        if domain:
            self.domain.append((start, self.length, domain))
        return self

    def build(self) -> Example:
        return Example("".join(self.parts), self.pii, self.domain)


class _Values:
    """Surface forms of PII and domain tokens, drawn from Faker with a seeded RNG."""

    def __init__(self, seed: int):
        from faker import Faker

        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in sorted(set(LOCALES))}
        for i, f in enumerate(self.fakers.values()):
            f.seed_instance(seed * 31 + i)
        self.us = self.fakers["en_US"]

    def faker(self):
        return self.fakers[self.rng.choice(LOCALES)]

    def first(self) -> str:
        return self.faker().first_name()

    def last(self) -> str:
        return self.faker().last_name()

    def full_name(self) -> str:
        r = self.rng.random()
        if r < 0.55:
            return f"{self.first()} {self.last()}"
        if r < 0.7:
            return self.faker().name()
        if r < 0.8:
            return f"{self.first()} {self.rng.choice(string.ascii_uppercase)}. {self.last()}"
        if r < 0.9:
            return f"{self.rng.choice(['Mr.', 'Ms.', 'Mrs.', 'Dr.', 'Mr', 'Ms'])} {self.last()}"
        return f"{self.last()}, {self.first()}"

    def email(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return self.faker().email()
        f, l = self.first().lower(), self.last().lower()
        dom = self.rng.choice(["gmail.com", "yahoo.co.uk", "outlook.com", "acme-corp.io", "mail.example.org",
                               "proton.me", "company.de", "uni.edu"])
        return self.rng.choice([f"{f}.{l}@{dom}", f"{f[0]}{l}{self.rng.randint(1, 99)}@{dom}", f"{f}_{l}@{dom}",
                                f"{l}.{f}@{dom}"]).replace(" ", "").replace("'", "")

    def phone(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return self.us.phone_number()
        if r < 0.6:
            return self.faker().phone_number()
        d = [str(self.rng.randint(0, 9)) for _ in range(10)]
        d[0] = str(self.rng.randint(2, 9))
        a, b, c = "".join(d[:3]), "".join(d[3:6]), "".join(d[6:])
        return self.rng.choice([f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"{a}-{b}-{c} ext. 23",
                                f"+44 20 {b[:2]}{c[:2]} {c}", f"+49 30 {b}{c}", f"1-{a}-{b}-{c}"])

    def card(self) -> str:
        num = self.us.credit_card_number()
        r = self.rng.random()
        if r < 0.4 or len(num) not in (15, 16):
            return num
        if len(num) == 15:
            return f"{num[:4]} {num[4:10]} {num[10:]}"
        sep = self.rng.choice([" ", "-"])
        return sep.join(num[i:i + 4] for i in range(0, 16, 4))

    def ssn(self) -> str:
        s = self.us.ssn()
        return self.rng.choice([s, s, s, s.replace("-", " ")])

    def iban(self) -> str:
        iban = self.faker().iban()
        if self.rng.random() < 0.4:
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def ip(self) -> str:
        return self.rng.choice([self.us.ipv4, self.us.ipv4_private, self.us.ipv4_public, self.us.ipv6])()

    def address(self) -> str:
        r = self.rng.random()
        f = self.fakers[self.rng.choice(["en_US", "en_US", "en_US", "en_GB", "en_CA", "en_AU"])]
        if r < 0.35:
            return f.street_address()
        if r < 0.7:
            return f.address()
        return f.address().replace("\n", ", ")

    def order(self) -> str:
        n = self.rng.randint
        return self.rng.choice([f"ORD-{n(2019, 2026)}-{n(0, 99999):05d}", f"#{n(100000, 9999999)}",
                                f"A-{n(10000, 99999)}-{n(10, 99)}", f"PO{n(100000, 999999)}",
                                f"{n(100, 999)}-{n(1000000, 9999999)}-{n(1000000, 9999999)}",
                                f"INV-{n(1000, 99999)}", f"TKT-{n(10000, 999999)}"])

    def sku(self) -> str:
        n, c = self.rng.randint, self.rng.choice
        up = string.ascii_uppercase
        return c([f"SKU-{n(1000, 9999)}-{c(['BLK', 'WHT', 'RED', 'XL', 'S'])}", f"{c(up)}{c(up)}-{n(100, 9999)}{c(up)}{n(1, 9)}",
                  f"B0{''.join(c(up + string.digits) for _ in range(8))}", f"{c(up)}{c(up)}{c(up)}{n(100, 999)}",
                  f"{c(['X', 'G', 'Z'])}{n(1, 9)}00-{c(up)}{c(up)}"])

    def version(self) -> str:
        n = self.rng.randint
        return self.rng.choice([f"v{n(1, 9)}.{n(0, 20)}.{n(0, 30)}", f"{n(1, 9)}.{n(0, 20)}.{n(0, 30)}",
                                f"{n(1, 5)}.{n(0, 9)}.{n(0, 9)}-beta.{n(1, 5)}", f"v{n(1, 20)}.{n(0, 9)}",
                                f"{n(10, 120)}.0.{n(1000, 9999)}.{n(10, 200)}"])

    def error(self) -> str:
        n, c = self.rng.randint, self.rng.choice
        return c([f"0x{n(0x80000000, 0x8FFFFFFF):08X}", c(["ERR_CONNECTION_RESET", "ERR_TIMEOUT", "E_ACCESSDENIED",
                                                           "ECONNREFUSED", "SSL_ERROR_BAD_CERT"]),
                  f"E{n(100, 9999)}", f"HTTP {c([400, 401, 403, 404, 429, 500, 502, 503])}",
                  f"ORA-{n(0, 99999):05d}", f"error code {n(100, 999)}"])

    def price(self) -> str:
        n, c = self.rng.randint, self.rng.choice
        amount = f"{n(1, 2999)}.{c(['00', '99', '49', '95'])}"
        return c([f"${amount}", f"€{amount}", f"£{amount}", f"{amount} USD", f"${n(1, 9)},{n(100, 999)}.00"])

    def plan(self) -> str:
        return self.rng.choice(["Pro", "Business Plus", "Enterprise", "Team", "Starter", "Growth", "Premium Family",
                                "Basic", "Pro Max", "Unlimited", "Essentials", "Scale", "Developer", "Plus"])


def _maybe_lower(text: str, rng: random.Random, p: float) -> str:
    return text.lower() if rng.random() < p else text


def generate(n: int, seed: int = 0) -> list[Example]:
    """``n`` labelled messages."""
    v = _Values(seed)
    rng = v.rng
    makers = [_ticket, _casual, _agent_reply, _signature, _markdown_table, _csv_dump, _key_values, _bullets,
              _short, _escalation]
    return [rng.choice(makers)(v, rng) for _ in range(n)]


def _ticket(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Hello,\n\n", "Hi team,\n", "Good morning, ", "To whom it may concern,\n", ""]))
    b.add(rng.choice(["My name is ", "This is ", "I am ", "I'm "])).add(v.full_name(), "PERSON")
    b.add(rng.choice([" and my order ", ". Order ", ", regarding order "])).add(v.order(), domain="order")
    b.add(rng.choice([" never arrived. ", " shows as delivered but isn't here. ", " was charged twice ("]))
    if b.parts[-1].endswith("("):
        b.add(v.price(), domain="price").add(" each). ")
    b.add(rng.choice(["Please ship it to ", "The address on file is ", "Deliver to "])).add(v.address(), "STREET_ADDRESS")
    b.add(rng.choice([". You can call me on ", ". Phone: ", ". Reach me at "])).add(v.phone(), "PHONE_NUMBER")
    b.add(rng.choice([" or email ", " / ", " or write to "])).add(v.email(), "EMAIL_ADDRESS")
    b.add(rng.choice([".\n\nThanks,\n", ".\nRegards,\n", ". Cheers, "])).add(v.first(), "PERSON")
    return b.build()


def _casual(v: _Values, rng) -> Example:
    b = _Builder()
    name = v.first()
    b.add(rng.choice(["hey its ", "hi, ", "yo this is ", "hiya ", "ok so ", "hello? "]))
    b.add(_maybe_lower(name, rng, 0.7), "PERSON")
    b.add(rng.choice([" lol ", " here, ", " again... ", "!! "]))
    b.add(rng.choice(["the app crashed with ", "keep getting ", "it says ", "still seeing "])).add(v.error(), domain="error")
    b.add(rng.choice([" after updating to ", " on ", " since "])).add(v.version(), domain="version")
    b.add(rng.choice([" :( my cc is ", ". can u refund to card ", " also pls remove card "])).add(v.card(), "CREDIT_CARD")
    b.add(rng.choice([" thx", " ty!!", "", " 🙏"]))
    if rng.random() < 0.5:
        b.add(rng.choice([" also my friend ", " and ", " btw "]))
        b.add(_maybe_lower(v.full_name(), rng, 0.6), "PERSON")
        b.add(rng.choice([" has the same issue", " got charged ", " wants the "]))
        if b.parts[-1].endswith("charged "):
            b.add(v.price(), domain="price")
        elif b.parts[-1].endswith("the "):
            b.add(v.plan(), domain="plan").add(" plan too")
    return b.build()


def _agent_reply(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Hi ", "Hello ", "Dear ", "Thanks for reaching out, "])).add(v.first(), "PERSON")
    b.add(rng.choice([", I've upgraded you to ", ". Your account is now on ", "! We moved you to "]))
    b.add(v.plan(), domain="plan").add(rng.choice([" for ", " at "])).add(v.price(), domain="price")
    b.add(rng.choice(["/mo. ", " per month. ", " a year. "]))
    b.add(rng.choice(["I also reset the login from ", "The suspicious sign-in came from ", "We blocked IP "]))
    b.add(v.ip(), "IP_ADDRESS")
    b.add(rng.choice([". Replacement ", ". The new unit ", ". Item "])).add(v.sku(), domain="sku")
    b.add(rng.choice([" ships today.", " is on its way.", " ships with firmware "]))
    if b.parts[-1].endswith("firmware "):
        b.add(v.version(), domain="version").add(".")
    b.add("\n\n").add(rng.choice(["Best,\n", "Kind regards,\n", "— ", "Thanks!\n"]))
    b.add(v.full_name() if rng.random() < 0.5 else v.first(), "PERSON")
    b.add(rng.choice(["\nCustomer Support", "\nTier 2 Support | Acme", "", "\nBilling team"]))
    return b.build()


def _signature(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Quick question about invoice ", "Can you check order ", "Following up on "]))
    b.add(v.order(), domain="order").add(rng.choice(["?\n\n", ", thanks.\n\n", ".\n\n"]))
    b.add(rng.choice(["--\n", "Sent from my phone\n", "Best regards,\n", "thx\n", ""]))
    b.add(_maybe_lower(v.full_name(), rng, 0.3), "PERSON")
    b.add(rng.choice(["\n", " | ", "\nSenior Buyer, Northwind Traders\n"]))
    b.add(rng.choice(["Mobile: ", "Tel ", "m: ", "Direct line: "])).add(v.phone(), "PHONE_NUMBER")
    b.add(rng.choice(["\n", " | ", "\nEmail: "])).add(v.email(), "EMAIL_ADDRESS")
    if rng.random() < 0.5:
        b.add("\n").add(v.address(), "STREET_ADDRESS")
    return b.build()


def _markdown_table(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Here are the affected customers:\n\n", "Accounts to migrate:\n", ""]))
    b.add("| Name | Email | Plan | Phone |\n|---|---|---|---|\n")
    for _ in range(rng.randint(1, 3)):
        b.add("| ").add(_maybe_lower(v.full_name(), rng, 0.25), "PERSON").add(" | ").add(v.email(), "EMAIL_ADDRESS")
        b.add(" | ").add(v.plan(), domain="plan").add(" | ").add(v.phone(), "PHONE_NUMBER").add(" |\n")
    return b.build()


def _csv_dump(v: _Values, rng) -> Example:
    b = _Builder()
    b.add("customer,ssn,iban,order,total\n")
    for _ in range(rng.randint(1, 3)):
        b.add(v.full_name().replace(",", ""), "PERSON").add(",").add(v.ssn(), "US_SSN").add(",")
        b.add(v.iban(), "IBAN_CODE").add(",").add(v.order(), domain="order").add(",").add(v.price(), domain="price").add("\n")
    return b.build()


def _key_values(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Customer details\n", "KYC check:\n", "Refund request\n"]))
    fields = [("Name", v.full_name(), "PERSON", None), ("SSN", v.ssn(), "US_SSN", None),
              ("IBAN", v.iban(), "IBAN_CODE", None), ("Card", v.card(), "CREDIT_CARD", None),
              ("Address", v.address().replace("\n", ", "), "STREET_ADDRESS", None),
              ("Last login IP", v.ip(), "IP_ADDRESS", None), ("Plan", v.plan(), None, "plan"),
              ("SKU", v.sku(), None, "sku"), ("Client version", v.version(), None, "version"),
              ("Amount", v.price(), None, "price")]
    rng.shuffle(fields)
    for key, value, pii, dom in fields[:rng.randint(4, len(fields))]:
        b.add(f"{key if rng.random() < 0.7 else key.lower()}: ").add(value, pii, dom).add("\n")
    return b.build()


def _bullets(v: _Values, rng) -> Example:
    b = _Builder()
    b.add("Escalation notes:\n")
    b.add("- reporter: ").add(_maybe_lower(v.full_name(), rng, 0.4), "PERSON").add("\n")
    b.add("- error: ").add(v.error(), domain="error").add(" on build ").add(v.version(), domain="version").add("\n")
    b.add("- source ip ").add(v.ip(), "IP_ADDRESS").add("\n")
    b.add("- callback: ").add(v.phone(), "PHONE_NUMBER").add("\n")
    b.add("- affected sku ").add(v.sku(), domain="sku").add(", order ").add(v.order(), domain="order").add("\n")
    return b.build()


def _short(v: _Values, rng) -> Example:
    b = _Builder()
    kind = rng.randrange(6)
    if kind == 0:
        b.add("pls call ").add(v.phone(), "PHONE_NUMBER")
    elif kind == 1:
        b.add(rng.choice(["my email is ", "email: ", "send it to "])).add(v.email(), "EMAIL_ADDRESS")
    elif kind == 2:
        b.add(_maybe_lower(v.first(), rng, 0.5), "PERSON").add(rng.choice([" here, ", " from billing: "]))
        b.add(v.sku(), domain="sku").add(" is out of stock")
    elif kind == 3:
        b.add("ssn ").add(v.ssn(), "US_SSN").add(rng.choice([" for the tax form", "", " (for W-9)"]))
    elif kind == 4:
        b.add("wire it to ").add(v.iban(), "IBAN_CODE").add(rng.choice([" please", "", " asap"]))
    else:
        b.add("upgrade to ").add(v.plan(), domain="plan").add(" cost me ").add(v.price(), domain="price")
    return b.build()


def _escalation(v: _Values, rng) -> Example:
    b = _Builder()
    b.add(rng.choice(["Spoke with ", "Call with ", "Talked to "])).add(v.full_name(), "PERSON")
    b.add(rng.choice([" (", ", "])).add(v.email(), "EMAIL_ADDRESS").add(rng.choice([") ", " "]))
    b.add(rng.choice(["about ", "re: "])).add(v.error(), domain="error")
    b.add(" after the ").add(v.version(), domain="version").add(" rollout. ")
    b.add(rng.choice(["She asked us to charge the card ending in ", "Card on file: "]))
    b.add(v.card(), "CREDIT_CARD").add(rng.choice([". Refund of ", ". Credit "])).add(v.price(), domain="price")
    b.add(rng.choice([" approved by ", " signed off by "])).add(_maybe_lower(v.first(), rng, 0.3), "PERSON").add(".")
    return b.build()
