export default { name: "modules" };
