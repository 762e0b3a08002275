"""A small labelled retrieval set: pages about distinct topics, and questions that paraphrase them.

Each page is one topic; each question names the page that answers it. Questions avoid the
page's rarest words where they can, so that lexical and semantic search can differ.
"""
from __future__ import annotations

PAGES = [
    ("Photosynthesis", "Green plants capture sunlight in chloroplasts and use it to turn carbon dioxide and water "
     "into glucose, releasing oxygen. Chlorophyll absorbs mostly red and blue light."),
    ("The French Revolution", "In 1789 Parisians stormed the Bastille. The monarchy of Louis XVI fell and the "
     "Declaration of the Rights of Man proclaimed liberty and equality."),
    ("Newton's laws", "An object keeps its velocity unless a net force acts on it. Force equals mass times "
     "acceleration, and every action has an equal and opposite reaction."),
    ("Plate tectonics", "The lithosphere is broken into plates that drift over the mantle. Where they collide, "
     "mountains rise and earthquakes shake the crust."),
    ("The water cycle", "Water evaporates from oceans, condenses into clouds, falls as precipitation and flows "
     "back through rivers and groundwater."),
    ("Cell division", "Mitosis splits one cell into two identical daughter cells, while meiosis makes gametes "
     "with half the chromosomes."),
    ("Supply and demand", "When a good becomes scarce its price tends to rise; when supply exceeds what buyers "
     "want, prices fall until the market clears."),
    ("Pythagorean theorem", "In a right triangle the square of the hypotenuse equals the sum of the squares of "
     "the other two sides."),
    ("The Roman Empire", "Augustus became the first emperor in 27 BC. The empire built roads and aqueducts and "
     "its western half fell in 476."),
    ("Electric circuits", "Ohm's law relates voltage, current and resistance: the voltage across a resistor is "
     "the current through it times its resistance."),
    ("DNA", "Genetic information is stored in a double helix of nucleotides; adenine pairs with thymine and "
     "guanine with cytosine."),
    ("Climate change", "Burning fossil fuels adds carbon dioxide to the atmosphere, trapping heat and raising "
     "global average temperatures."),
    ("The printing press", "Gutenberg's movable type, around 1440, made books cheap and spread literacy and "
     "new ideas across Europe."),
    ("Volcanoes", "Magma rises through vents in the crust and erupts as lava, ash and gas; many volcanoes sit "
     "along the Pacific Ring of Fire."),
    ("Probability", "The probability of an event is the number of favourable outcomes divided by the number of "
     "equally likely outcomes."),
    ("The immune system", "White blood cells recognise pathogens; vaccines train the body to make antibodies "
     "before a real infection."),
    ("World War I", "The assassination of Archduke Franz Ferdinand in 1914 set off a war fought largely in "
     "trenches across Europe."),
    ("Acids and bases", "Acids donate protons and have a pH below seven; bases accept them and have a pH above "
     "seven. Neutral water sits at seven."),
    ("Shakespeare", "The playwright wrote Hamlet, Macbeth and Romeo and Juliet, and many sonnets, in Elizabethan "
     "England."),
    ("Black holes", "When a massive star collapses, gravity becomes so strong that not even light escapes past "
     "the event horizon."),
]

# (question, page number from 1)
QUESTIONS = [
    ("How do plants make food from light?", 1),
    ("What happened when the Paris crowd attacked the old prison?", 2),
    ("What is the formula linking force, mass and acceleration?", 3),
    ("Why do earthquakes happen where plates meet?", 4),
    ("How does rain get back to the sea?", 5),
    ("What is the difference between mitosis and meiosis?", 6),
    ("Why do prices go up when something is scarce?", 7),
    ("How do I find the longest side of a right-angled triangle?", 8),
    ("Who was the first Roman emperor?", 9),
    ("How are voltage, current and resistance related?", 10),
    ("Which bases pair together in the double helix?", 11),
    ("What makes the planet warmer when we burn coal and oil?", 12),
    ("Who invented movable type printing?", 13),
    ("Where does lava come from?", 14),
    ("How do you compute the chance of an outcome?", 15),
    ("How do vaccines protect us?", 16),
    ("What event started the Great War?", 17),
    ("What pH does a neutral solution have?", 18),
    ("Who wrote Macbeth?", 19),
    ("Why can't light escape a collapsed star?", 20),
]


def page_texts() -> list[str]:
    return [f"{title}\n\n{body}" for title, body in PAGES]
