"""Demo data: a realistic customer-support dataset for a fictional smart-home product, "Lumio".

About 600 conversations with intent labels (``meta.label``) and customer ids
(``meta.customer_id``; many customers write more than once), a consistent house style in the
answers (so fine-tuning has something to learn), domain tokens that must survive PII scrubbing
(order numbers, SKUs, firmware versions, error codes, prices, plan names), planted PII (names,
emails, phones, addresses, card numbers) and planted near-duplicates (a ticket re-sent with a
typo). Loaded into a fresh workspace on first start so every tab has something to show.

``python -m curation.data.demo OUT.jsonl [--n 600] [--seed 0]`` writes it as messages JSONL.
"""
from __future__ import annotations

import argparse
import random

from curation.data.records import Record

SYSTEM = "You are Lumio Support. Answer in a friendly, precise way and give concrete next steps."
PLANS = ["Basic", "Plus", "Pro", "Family"]
PRICES = {"Basic": "$4.99", "Plus": "$9.99", "Pro": "$14.99", "Family": "$19.99"}
PRODUCTS = [("Lumio Hub 2", "LUM-HUB-200"), ("Lumio Bulb Color", "LUM-BLB-110"),
            ("Lumio Motion Sensor", "LUM-SNS-310"), ("Lumio Smart Plug", "LUM-PLG-050"),
            ("Lumio Doorbell Cam", "LUM-CAM-720")]
FIRMWARE = ["v2.4.1", "v2.5.0", "v3.0.2", "v3.1.0"]
ERRORS = {"E-1042": "the hub lost its Wi-Fi connection", "E-2210": "the device failed to pair",
          "E-3307": "a firmware download was interrupted", "E-4015": "the camera stream timed out"}

INTENTS = {
    "order_status": (
        ["Where is my order {order}? It's been a week.", "hi, any update on order {order}?",
         "My {product} (order {order}) still hasn't shipped. What's going on?",
         "Can you tell me when order {order} will arrive?"],
        "Thanks for checking in! Order {order} ({product}, {sku}) left our warehouse and is with the "
        "carrier. You can track it from Account > Orders > {order}. Most deliveries arrive within 3-5 "
        "business days of shipping; if it hasn't arrived by then, reply here and we'll open a carrier trace."),
    "refund": (
        ["I want a refund for my {product}, order {order}.", "How do I return the {product} I bought? Order {order}",
         "The {product} doesn't work for me, can I get my money back? order {order}",
         "requesting a refund for {order}, the {sku} arrived damaged"],
        "I'm sorry the {product} didn't work out. You can return it within 30 days: go to Account > "
        "Orders > {order} > Return item, print the prepaid label and drop the parcel at any carrier point. "
        "Your refund of {price} goes back to the original payment method within 5 business days of us "
        "receiving it."),
    "password_reset": (
        ["I can't log in to the Lumio app, forgot my password.", "how do i reset my password??",
         "Password reset email never arrives. Help!", "Locked out of my Lumio account after too many tries."],
        "No problem! Open the Lumio app, tap Sign in > Forgot password and enter the email on your account. "
        "The reset link is valid for 30 minutes; check your spam folder if it doesn't arrive. After 5 failed "
        "attempts the account locks for 15 minutes, then you can try again."),
    "billing": (
        ["Why was I charged {price} twice this month?", "I see two charges for my {plan} plan, please explain.",
         "My invoice shows {price} but I thought {plan} was cheaper?", "double charge on my card for the {plan} plan"],
        "Thanks for flagging this. The {plan} plan costs {price} per month. If you see two charges, one is "
        "usually a pending authorisation that disappears within 3 business days. If both are still there "
        "after that, reply with the invoice numbers from Account > Billing and we'll refund the duplicate."),
    "cancel_subscription": (
        ["Please cancel my {plan} subscription.", "How do I cancel my plan?",
         "I want to stop paying for {plan}, how do I cancel?", "cancel my lumio subscription pls"],
        "Sorry to see you go! You can cancel any time in Account > Subscription > Cancel plan. Your {plan} "
        "features stay active until the end of the current billing period, and your devices keep working "
        "on the free Basic tier afterwards."),
    "plan_upgrade": (
        ["What's the difference between Plus and Pro?", "I want to upgrade to {plan}, how much is it?",
         "Does the {plan} plan include video history for the doorbell?", "how to upgrade my plan to {plan}"],
        "Great question! {plan} costs {price} per month. Plus adds 7 days of event history, Pro adds 30 days "
        "of video history and person detection, and Family covers up to 10 homes. Upgrade in Account > "
        "Subscription > Change plan; the new features switch on immediately and the price is prorated."),
    "device_setup": (
        ["How do I set up my new {product}?", "My {product} ({sku}) won't pair with the hub.",
         "setting up the {product}, it keeps blinking blue", "Can't add {product} in the app, what do I do?"],
        "Let's get your {product} ({sku}) connected. Make sure your Lumio Hub 2 runs firmware {firmware} or "
        "newer (Settings > Hub > Firmware). Then open the app, tap + > Add device > {product}, and hold the "
        "pairing button for 5 seconds until the light blinks green. Keep the device within 3 metres of the "
        "hub during pairing."),
    "error_code": (
        ["The app shows error {code}, what does it mean?", "Getting {code} on my hub after updating to {firmware}.",
         "error code {code} keeps popping up", "What is {code}? My {product} stopped working."],
        "Error {code} means {error_text}. Restart the hub by unplugging it for 10 seconds, then check that it "
        "runs firmware {firmware} or newer. If {code} comes back more than twice in a day, send us the "
        "diagnostics from Settings > Help > Send logs and we'll take a look."),
    "warranty": (
        ["Is my {product} still under warranty?", "My {sku} broke after 8 months, is that covered?",
         "warranty claim for {product}", "Does the warranty cover water damage on the {product}?"],
        "Every Lumio device, including the {product} ({sku}), has a 2-year limited warranty from the date of "
        "purchase. It covers hardware faults but not accidental or water damage. Start a claim in Account > "
        "Orders > Warranty claim with a photo of the device and its serial number."),
    "shipping_address": (
        ["I need to change the shipping address on order {order}.", "Wrong address on {order}, can you fix it?",
         "can i ship order {order} to my work address instead", "Update delivery address for my order {order}"],
        "We can change the address as long as order {order} hasn't shipped yet. Go to Account > Orders > "
        "{order} > Edit address. If the button is greyed out, the parcel is already with the carrier and you "
        "can redirect it from the tracking page instead."),
}

PII_OPENERS = [
    "Hi, this is {name}. ", "Hello, {name} here ({email}). ", "Hey it's {first} lol. ",
    "My name is {name}, phone {phone}. ", "", "", "", "", "", "",
]
PII_CLOSERS = [
    "", "", "", "", "", "\n\nThanks,\n{name}\n{phone}", " You can reach me at {email}.",
    " Ship to {address}.", " Card ending {card_last4} was charged.", " My card number is {card}.",
]


def _typo(text: str, rng: random.Random) -> str:
    """A light edit: a dropped or swapped letter, or changed case — how people re-send tickets."""
    words = text.split(" ")
    i = rng.randrange(len(words))
    w = words[i]
    choice = rng.random()
    if len(w) > 3 and choice < 0.4:
        j = rng.randrange(1, len(w) - 1)
        words[i] = w[:j] + w[j + 1:]
    elif len(w) > 3 and choice < 0.7:
        j = rng.randrange(0, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    else:
        return text.lower()
    return " ".join(words)


def demo_records(n: int = 600, seed: int = 0) -> list[Record]:
    """The demo dataset, deterministic for a seed."""
    from faker import Faker

    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    customers = [f"CUST-{i:05d}" for i in rng.sample(range(1, 99999), max(1, n // 3))]
    people = {c: {"name": fake.name(), "email": fake.email(), "phone": fake.phone_number(),
                  "address": fake.address().replace("\n", ", "), "card": fake.credit_card_number("visa16")}
              for c in customers}
    records: list[Record] = []
    intents = list(INTENTS)
    while len(records) < n:
        if records and rng.random() < 0.08:
            # A near-duplicate: the same customer re-sends a ticket with a small edit.
            src = rng.choice(records)
            msgs = [dict(m) for m in src.messages]
            user_idx = next(i for i, m in enumerate(msgs) if m["role"] == "user")
            msgs[user_idx]["content"] = _typo(msgs[user_idx]["content"], rng)
            meta = {**src.meta, "source": "email-resend"}
            records.append(Record(id=f"demo-{len(records) + 1:04d}", messages=msgs, meta=meta))
            continue
        intent = rng.choice(intents)
        customer = rng.choice(customers)
        person = people[customer]
        product, sku = rng.choice(PRODUCTS)
        plan = rng.choice(PLANS)
        code = rng.choice(list(ERRORS))
        slots = {"order": f"ORD-{rng.randint(100000, 999999)}", "product": product, "sku": sku, "plan": plan,
                 "price": PRICES[plan] if intent != "refund" else f"${rng.choice([29, 49, 59, 129])}.99",
                 "firmware": rng.choice(FIRMWARE), "code": code, "error_text": ERRORS[code]}
        questions, answer = INTENTS[intent]
        pii = {"name": person["name"], "first": person["name"].split()[0].lower(), "email": person["email"],
               "phone": person["phone"], "address": person["address"], "card": person["card"],
               "card_last4": person["card"][-4:]}
        opener = rng.choice(PII_OPENERS).format(**pii)
        closer = rng.choice(PII_CLOSERS).format(**pii)
        question = opener + rng.choice(questions).format(**slots) + closer
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": SYSTEM})
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer.format(**slots)}]
        if rng.random() < 0.12:
            messages += [{"role": "user", "content": rng.choice(["Thanks! One more thing: how long does that take?",
                                                                 "ok and if that doesn't work?"])},
                         {"role": "assistant", "content": "Usually just a few minutes. If it doesn't work, reply "
                                                          "here with what the app shows and we'll take it from there."}]
        meta = {"label": intent, "customer_id": customer, "source": rng.choice(["chat", "email", "web-form"]),
                "ticket_id": f"T{rng.randint(10000, 99999)}"}
        records.append(Record(id=f"demo-{len(records) + 1:04d}", messages=messages, meta=meta))
    return records


def load_demo(ws, n: int = 600, seed: int = 0):
    """Import the demo dataset into ``ws`` as a new current version; returns the version."""
    from curation.data.versions import create_version
    return create_version(ws, demo_records(n, seed), parent=None, step="import",
                          params={"file": "demo (built-in)", "format": "messages", "seed": seed},
                          note="Built-in demo data: Lumio customer support")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.data.demo", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="where to write the messages JSONL")
    parser.add_argument("--n", type=int, default=600, help="number of conversations (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from curation.data.formats import write_jsonl
    write_jsonl(demo_records(args.n, args.seed), args.out)
    print(f"wrote {args.n} demo conversations to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

